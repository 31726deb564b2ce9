"""The HTTP input's request rules, pure: routes, credentials headers, content types, and
the problem+json answers (RFC 9457). The server and the waiting live in
``ingest/inputs/http.py``; docs/payloads.md, "HTTP input", is the user's side of this.

Routes (POST):
    /v1/devices/<id>/readings      a device's readings (native JSON shapes, SenML JSON)
    /v1/devices/<id>/pack          a gateway's pack
    /v1/integrations/<name>/<fmt>  an operator platform or network server, in a format
                                   registered in ``sensornet.formats``
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from sensornet.formats import FORMAT_HEADERS

PROBLEM = "application/problem+json"
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # a registry id (sensornet.registry.store.SENSOR_ID)
_DEVICE_ROUTE = re.compile(rf"^/v1/devices/({_ID})/(readings|pack)$")
_INTEGRATION_ROUTE = re.compile(rf"^/v1/integrations/({_ID})/([A-Za-z0-9_.+-]{{1,64}})$")
MAX_IDEMPOTENCY_KEY = 255

# Content types of the device routes: the native JSON path (which also reads SenML JSON
# packs), or a format name that is used when sensornet.formats has a decoder for it.
# SenML CBOR (RFC 8428 §6) is read by the native path too (sensornet.codec: a CBOR array).
JSON_TYPES = frozenset(
    {"application/json", "application/senml+json", "application/senml+cbor",
     "application/cbor", "text/plain", ""}
)  # fmt: skip
# Formats of the integration routes that a registered device may also push with its own
# credentials (Basic: its id and password), for its own readings only: the airrohr
# firmware posts to one configured path with the user and password set on each node.
DEVICE_FORMATS = frozenset({"sensor.community"})
_HEADER_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
FORMAT_TYPES = {
    "application/senml+json": "senml+json",
    "application/senml+cbor": "senml+cbor",
    "application/cbor": "senml+cbor",
}


@dataclass(frozen=True, slots=True)
class Route:
    auth: Literal["device", "integration"]
    name: str  # the device id, or the integration's name
    kind: Literal["readings", "pack", "format"]
    fmt: str = ""  # for integrations: the format of the path
    query: str = ""  # for integrations: the URL's query (ChirpStack says ?event=up in it)


def route_of(path: str) -> Route | None:
    if (m := _DEVICE_ROUTE.match(path)) is not None:
        kind: Literal["readings", "pack"] = "pack" if m[2] == "pack" else "readings"
        return Route("device", m[1], kind)
    if (m := _INTEGRATION_ROUTE.match(path)) is not None:
        return Route("integration", m[1], "format", m[2])
    return None


def credentials(headers: dict[str, str]) -> tuple[str | None, str] | None:
    """``(user, secret)`` from ``Authorization: Basic`` or ``Bearer`` (no user), else None."""
    value = headers.get("authorization", "")
    scheme, _, rest = value.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and rest.strip():
        return None, rest.strip()
    if scheme == "basic":
        try:
            user, sep, secret = (
                base64.b64decode(rest.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
        if sep:
            return user, secret
    return None


def media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def problem(status: int, title: str, detail: str, reason: str, **extra: Any) -> bytes:
    """A problem+json body; ``reason`` is the machine-readable cause (as in dead letters)."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "reason": reason,
        **extra,
    }
    return orjson.dumps(body)


def header_segments(fmt: str, headers: dict[str, str]) -> str | None:
    """The headers ``fmt`` reads (``sensornet.formats.FORMAT_HEADERS``) as topic segments
    ``/<header>=<value>``; None when one holds what no topic segment may."""
    out = ""
    for name in FORMAT_HEADERS.get(fmt, ()):
        value = headers.get(name)
        if value is None:
            continue
        if not _HEADER_VALUE.fullmatch(value):
            return None
        out += f"/{name}={value}"
    return out
