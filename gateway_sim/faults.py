"""Fault injection with ground truth. Which reading gets which fault is a pure function of
(seed, device, seq), and every injected fault is written to a JSON-lines file together
with what the platform is expected to do with it (a dead-letter reason of
docs/payloads.md, or an outcome such as ``not_sent`` or ``stored_once``)."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from gateway_sim.payloads import Item, flat
from gateway_sim.signals import hash_keys, uniform
from sensornet.catalogue import Catalogue

FAULT_KINDS = (
    "dropout",
    "flapping",
    "clock_skew",
    "duplicate",
    "out_of_range",
    "malformed",
    "hostile",
    "foreign_topic",
)
# Faults that make sense for a reading inside a gateway pack (a broken message would take
# the whole pack with it, which is a gateway fault, not a sensor's).
PACK_FAULTS = frozenset({"dropout", "clock_skew", "duplicate", "out_of_range"})
SKEW_S = 3_600  # an hour ahead: beyond the platform's 5-minute allowance
HOSTILE = (
    ("too_deep", b'{"ts":1,"values":{"a":{"b":{"c":{"d":{}}}}}}'),
    ("bad_shape", b'"just a string"'),
    ("invalid_utf8", b'{"x": "\xff\xfe"}'),
    ("oversize", b'{"x":"' + b"A" * 300_000 + b'"}'),
)


@dataclass(frozen=True)
class FaultPlan:
    """Inject ``rate`` of readings with one of ``kinds``, deterministically."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 151

    def pick(self, device_id: str, seq: int, in_pack: bool = False) -> str | None:
        if self.rate <= 0 or not self.kinds:
            return None
        h = hash_keys(self.seed, zlib.crc32(device_id.encode()), seq, 99)
        if float(uniform(h)[0]) >= self.rate:
            return None
        kinds = [k for k in self.kinds if k in PACK_FAULTS] if in_pack else list(self.kinds)
        if not kinds:
            return None
        return kinds[int(h[0] >> 40) % len(kinds)]


@dataclass(frozen=True, slots=True)
class Injected:
    """What to send instead of a clean reading, and what the platform should do with it."""

    payload: bytes | None  # None: nothing is sent
    topic_device: str  # whose topic it goes to
    expected: str  # dead-letter reason, or not_sent / stored / stored_once / acl_denied
    platform_device: str  # the device the platform will book it under
    platform_seq: int | None  # the seq the platform can read back (None if unparseable)
    copies: int = 1


def out_of_range(item: Item, catalogue: Catalogue, type_id: str) -> tuple[Item, str]:
    """The reading with an impossible value, and the reason the platform should give: a
    number beyond the valid range, or for a type with no numeric quantity a number where
    a bool or string belongs (``wrong_type``)."""
    values = dict(item.values)
    quantities = list(catalogue.get(type_id).quantities.values())
    numeric = [q for q in quantities if q.max is not None]
    if numeric:
        q = numeric[0]
        assert q.max is not None
        values[q.id] = q.max * 2 + 1 if q.max > 0 else q.max + 100.0
        reason = "out_of_range"
    else:
        values[quantities[0].id] = 2
        reason = "wrong_type"
    return Item(item.sensor_id, item.ts_ms, item.seq, values), reason


def inject(
    kind: str,
    item: Item,
    *,
    catalogue: Catalogue,
    type_id: str,
    foreign: tuple[str, str] | None,
    per_device_auth: bool,
) -> Injected:
    """The message a faulty device sends. ``foreign`` is (sensor id, type) of a sensor of
    another type whose topic the fault publishes to."""
    me = item.sensor_id
    if kind == "dropout":
        return Injected(None, me, "not_sent", me, item.seq)
    if kind in ("flapping",):
        return Injected(flat(item), me, "stored", me, item.seq)
    if kind == "duplicate":
        return Injected(flat(item), me, "stored_once", me, item.seq, copies=2)
    if kind == "clock_skew":
        skewed = Item(me, item.ts_ms + SKEW_S * 1000, item.seq, item.values)
        return Injected(flat(skewed), me, "ts_future", me, item.seq)
    if kind == "out_of_range":
        bad, reason = out_of_range(item, catalogue, type_id)
        return Injected(flat(bad), me, reason, me, item.seq)
    if kind == "malformed":
        return Injected(flat(item)[:-7], me, "invalid_json", me, None)
    if kind == "hostile":
        reason, payload = HOSTILE[item.seq % len(HOSTILE)]
        return Injected(payload, me, reason, me, None)
    if kind == "foreign_topic" and foreign is not None:
        target, _ = foreign
        if per_device_auth:
            return Injected(flat(item), target, "acl_denied", target, item.seq)
        return Injected(flat(item), target, "unknown_quantity", target, item.seq)
    return Injected(flat(item), me, "stored", me, item.seq)  # no foreign type available


def foreign_targets(devices: Mapping[str, str], catalogue: Catalogue) -> dict[str, tuple[str, str]]:
    """For each type, one sensor of a type with no quantity in common, so its readings on
    that topic are refused as ``unknown_quantity`` rather than stored under a wrong id."""
    first_of: dict[str, str] = {}
    for sensor_id, type_id in devices.items():
        first_of.setdefault(type_id, sensor_id)
    out: dict[str, tuple[str, str]] = {}
    for type_id in first_of:
        mine = set(catalogue.get(type_id).quantities)
        for other, sensor_id in first_of.items():
            if other != type_id and not mine & set(catalogue.get(other).quantities):
                out[type_id] = (sensor_id, other)
                break
    return out


@dataclass
class GroundTruth:
    """What the simulator sent and what it expects the platform to have done."""

    path: Path | None = None
    sent: Counter[str] = field(default_factory=Counter)  # readings (seqs) per device
    expected_stored: Counter[str] = field(default_factory=Counter)
    expected_rejects: Counter[tuple[str, str, int | None]] = field(default_factory=Counter)
    denied: Counter[str] = field(default_factory=Counter)  # refused by the broker's ACL
    not_sent: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    #: sent, but the broker never acknowledged them before the device gave up: lost on
    #: the device (it knows; a real one would keep them), never the platform's loss
    unacked: Counter[str] = field(default_factory=Counter)
    #: which readings, where known: the report looks for them in storage (a PUBACK lost
    #: with the connection leaves a reading the broker did take)
    unacked_keys: set[tuple[str, int]] = field(default_factory=set)
    #: sensors whose readings reach the platform over its HTTP input (their own requests,
    #: or their gateway's): the report gives their share of the totals apart
    over_http: set[str] = field(default_factory=set)
    _file: IO[bytes] | None = None

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")

    def clean(self, device: str) -> None:
        self.sent[device] += 1
        self.expected_stored[device] += 1

    def never_acknowledged(self, device: str, seq: int | None = None) -> None:
        self.unacked[device] += 1
        if seq is not None:
            self.unacked_keys.add((device, seq))

    def fault(self, kind: str, item: Item, injected: Injected, **extra: Any) -> None:
        self.faults[kind] += 1
        if injected.expected == "not_sent":
            self.not_sent[item.sensor_id] += 1
        else:
            self.sent[item.sensor_id] += 1
        if injected.expected in ("stored", "stored_once"):
            self.expected_stored[item.sensor_id] += 1
        elif injected.expected == "acl_denied":
            self.denied[item.sensor_id] += 1
        elif injected.expected != "not_sent":
            key = (injected.platform_device, injected.expected, injected.platform_seq)
            self.expected_rejects[key] += 1
        record = {
            "device": item.sensor_id,
            "seq": item.seq,
            "ts_ms": item.ts_ms,
            "fault": kind,
            "expected": injected.expected,
            "platform_device": injected.platform_device,
            "platform_seq": injected.platform_seq,
            **extra,
        }
        if self._file is not None:
            self._file.write(orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
