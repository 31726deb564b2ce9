"""Validation of decoded readings against the catalogue and the registry. Pure.

Policy (docs/payloads.md): a reading is stored whole or rejected whole with one reason,
so accounting stays per reading. Keys its type does not know do not refuse it: they are
returned in ``ValidReading.unknown`` to be counted (``sensornet.unknown_keys``), and only a
reading with no known quantity at all is refused (``unknown_quantity``). A value outside
the quantity's physically valid range is rejected (``out_of_range``); a value inside it but
outside the typical range is a real if unusual observation and is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sensornet.catalogue import Catalogue, Quantity, SensorType
from sensornet.lineprotocol import FieldValue
from sensornet.records import RawReading
from sensornet.registry.store import DeviceInfo
from sensornet.rules import MAX_FUTURE_NS, MAX_PAST_NS

__all__ = ["MAX_FUTURE_NS", "MAX_PAST_NS", "Rejection", "ValidReading", "validate"]


@dataclass(frozen=True, slots=True)
class ValidReading:
    device: DeviceInfo
    sensor_type: SensorType
    fields: dict[str, FieldValue]
    ts_ns: int
    seq: int | None
    unknown: tuple[str, ...] = ()  # keys its type does not know: counted, not stored

    def tags(self) -> dict[str, str]:
        return {"sensor_id": self.device.id, "subdistrict": self.device.subdistrict}


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


def _coerce(q: Quantity, value: Any) -> FieldValue | Rejection:
    kind = q.kind
    if (  # the common case, decided in one test
        kind == "float"
        and type(value) is float
        and q.min is not None
        and q.max is not None
        and q.min <= value <= q.max  # False for NaN; infinities are outside any range
    ):
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        return Rejection("wrong_type", f"{q.id} must be true/false, got {value!r:.40}")
    if kind == "string":
        if not isinstance(value, str):
            return Rejection("wrong_type", f"{q.id} must be a string")
        if q.allowed is not None and value not in q.allowed:
            return Rejection("not_allowed", f"{q.id}={value!r:.40} not in {list(q.allowed)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Rejection("wrong_type", f"{q.id} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        return Rejection("not_finite", f"{q.id} is {value}")
    number: FieldValue
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            return Rejection("wrong_type", f"{q.id} must be an integer, got {value}")
        number = int(value)
    else:
        number = float(value)
    if (q.min is not None and number < q.min) or (q.max is not None and number > q.max):
        return Rejection("out_of_range", f"{q.id}={number} outside [{q.min}, {q.max}] {q.unit}")
    return number


def validate(
    raw: RawReading,
    device: DeviceInfo | None,
    catalogue: Catalogue,
    now_ns: int,
    sensor_id: str,
    arrival_ns: int | None = None,
) -> ValidReading | Rejection:
    if device is None:
        return Rejection("unknown_sensor", f"sensor {sensor_id!r:.80} is not registered")
    if not device.reporting:
        return Rejection(f"sensor_{device.status}", f"sensor {device.id} is {device.status}")
    sensor_type = catalogue.types.get(device.type)
    if sensor_type is None:  # registered before its type left the catalogue
        return Rejection(
            "unknown_type", f"sensor {device.id} has type {device.type!r:.80}, not in the catalogue"
        )
    fallback_ns = now_ns if arrival_ns is None else arrival_ns
    ts_ns = fallback_ns if raw.ts_ns is None else raw.ts_ns
    if ts_ns > now_ns + MAX_FUTURE_NS:
        return Rejection("ts_future", f"timestamp {ts_ns} is ahead of the platform clock")
    if ts_ns < now_ns - MAX_PAST_NS:
        return Rejection("ts_past", f"timestamp {ts_ns} is older than the accepted window")
    fields: dict[str, FieldValue] = {}
    quantities = sensor_type.quantities
    unknown: list[str] = []
    for key, value in raw.values.items():
        q = quantities.get(key)
        if q is None:  # lenient where it loses nothing: counted per device, not stored
            unknown.append(key)
            continue
        coerced = _coerce(q, value)
        if isinstance(coerced, Rejection):
            return coerced
        fields[key] = coerced
    if not fields:
        names = ", ".join(repr(k)[:40] for k in unknown[:5])
        return Rejection("unknown_quantity", f"no quantity of {device.type} in {names}")
    if raw.seq is not None:  # stored, so losses can be counted from InfluxDB alone
        fields["seq"] = raw.seq
    return ValidReading(device, sensor_type, fields, ts_ns, raw.seq, tuple(unknown))
