"""What a subscription asks for, checked before anything is stored (pure).

A subscription names an endpoint, the event kinds it wants and a filter; an empty filter
list means "all". Why https only: events leave the platform and are signed, not
encrypted; plain http is for a receiver on the same host (loopback) or where an operator
says so (``SENSORNET_NORTHBOUND_ALLOW_HTTP``, e.g. a city network with its own transport
encryption)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

from sensornet.catalogue import ID_RE, Catalogue
from sensornet.district import District
from sensornet.errors import SensornetError

Kind = Literal["readings", "status", "alarms", "aggregates"]
KINDS: tuple[Kind, ...] = get_args(Kind)
#: Aggregate resolutions an integrator may choose, in seconds (InfluxQL durations).
RESOLUTIONS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
MAX_FILTER_ITEMS = 1000
_SENSOR_ID_MAX = 64


class InvalidSubscription(SensornetError):
    """A subscription cannot be registered as given; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which sensors' events: each non-empty tuple restricts, all must match."""

    types: tuple[str, ...] = ()
    subdistricts: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()

    def matches(self, sensor_id: str, type_id: str, subdistrict: str) -> bool:
        return (
            (not self.types or type_id in self.types)
            and (not self.subdistricts or subdistrict in self.subdistricts)
            and (not self.sensors or sensor_id in self.sensors)
        )

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "types": list(self.types),
            "subdistricts": list(self.subdistricts),
            "sensors": list(self.sensors),
        }


@dataclass(frozen=True, slots=True)
class Spec:
    """A subscription's checked definition (what the integrator asked for)."""

    name: str
    url: str
    kinds: tuple[Kind, ...]
    filter: Filter = field(default_factory=Filter)
    resolution: str | None = None  # for "aggregates" only

    @property
    def resolution_s(self) -> int | None:
        return RESOLUTIONS[self.resolution] if self.resolution else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_http: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidSubscription(f"url {url!r}: an absolute https:// URL is needed")
    if parts.username or parts.password:
        raise InvalidSubscription("url: no credentials in the URL; the secret signs requests")
    if parts.fragment:
        raise InvalidSubscription("url: no #fragment")
    if parts.scheme == "http" and not (allow_http or is_loopback(parts.hostname)):
        raise InvalidSubscription(
            f"url {url!r}: plain http only to a loopback receiver or with "
            "SENSORNET_NORTHBOUND_ALLOW_HTTP=true; use https"
        )
    return url


def _ids(what: str, values: Sequence[str], known: Sequence[str] | None) -> tuple[str, ...]:
    if len(values) > MAX_FILTER_ITEMS:
        raise InvalidSubscription(f"filter.{what}: at most {MAX_FILTER_ITEMS} entries")
    out: list[str] = []
    for v in values:
        if known is not None and v not in known:
            raise InvalidSubscription(f"filter.{what}: unknown {v!r}; known: {', '.join(known)}")
        if known is None and (not v or len(v) > _SENSOR_ID_MAX or not v.isprintable()):
            raise InvalidSubscription(f"filter.{what}: {v!r} is not a sensor id")
        if v not in out:
            out.append(v)
    return tuple(out)


def check_spec(
    name: str,
    url: str,
    kinds: Sequence[str],
    types: Sequence[str],
    subdistricts: Sequence[str],
    sensors: Sequence[str],
    resolution: str | None,
    catalogue: Catalogue,
    district: District,
    allow_http: bool,
) -> Spec:
    """The checked ``Spec``, or ``InvalidSubscription`` naming the first problem."""
    if not name.strip() or len(name) > 128:
        raise InvalidSubscription("name: 1 to 128 characters")
    if not kinds:
        raise InvalidSubscription(f"kinds: at least one of {', '.join(KINDS)}")
    wanted: list[Kind] = []
    for k in kinds:
        if k not in KINDS:
            raise InvalidSubscription(f"kinds: unknown {k!r}; one of {', '.join(KINDS)}")
        if k not in wanted:
            wanted.append(k)
    if ("aggregates" in wanted) != (resolution is not None):
        raise InvalidSubscription(
            "resolution: required with kind 'aggregates' (one of "
            f"{', '.join(RESOLUTIONS)}) and meaningless without it"
        )
    if resolution is not None and resolution not in RESOLUTIONS:
        raise InvalidSubscription(f"resolution {resolution!r}: one of {', '.join(RESOLUTIONS)}")
    for t in types:
        if not ID_RE.match(t):
            raise InvalidSubscription(f"filter.types: {t!r} is not a type id")
    return Spec(
        name.strip(),
        check_url(url, allow_http),
        tuple(wanted),
        Filter(
            _ids("types", types, list(catalogue.types)),
            _ids("subdistricts", subdistricts, list(district.subdistricts)),
            _ids("sensors", sensors, None),
        ),
        resolution,
    )
