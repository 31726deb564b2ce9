"""SenML (RFC 8428, JSON) to raw readings.

Names resolve as ``bn + n``. A resolved name ``<sensor>/<quantity>`` (or with ':' as the
separator, as in ``urn:dev:...``) names the sensor, so one gateway pack can carry many
sensors; a bare ``<quantity>`` belongs to the device of the topic. Records of the same
sensor and time become one reading. Times below 2**28 are relative to now (§4.5.3).
"""

from __future__ import annotations

import time
from typing import Any

from sensornet.errors import PayloadError
from sensornet.records import RawReading
from sensornet.timestamps import to_ns

_RELATIVE_BELOW = 2**28
_VALUE_KEYS = ("v", "vs", "vb", "vd")


def _number(record: dict[str, Any], key: str) -> float:
    value = record.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_senml", f"SenML '{key}' must be a number")
    return value


def _split_name(name: str) -> tuple[str | None, str]:
    cut = max(name.rfind("/"), name.rfind(":"))
    if cut < 0:
        return None, name
    sensor, quantity = name[:cut], name[cut + 1 :]
    if sensor.startswith("urn:dev:"):
        sensor = sensor.rsplit(":", 1)[-1]
    return (sensor or None), quantity


def decode_senml(records: list[Any], now_s: float | None = None) -> list[RawReading]:
    now = time.time() if now_s is None else now_s
    base_name, base_time, base_value = "", 0.0, 0.0
    grouped: dict[tuple[str | None, float], RawReading] = {}
    for record in records:
        if not isinstance(record, dict):
            raise PayloadError("bad_senml", "SenML records must be objects")
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise PayloadError("bad_senml", "SenML 'bn' must be a string")
            base_name = record["bn"]
        if "bt" in record:
            base_time = _number(record, "bt")
        if "bv" in record:
            base_value = _number(record, "bv")
        present = [k for k in _VALUE_KEYS if k in record]
        if not present:
            if "n" in record or "t" in record:
                raise PayloadError("bad_senml", "SenML record has no value (v/vs/vb/vd)")
            continue  # a pure base record
        if len(present) > 1:
            raise PayloadError("bad_senml", f"SenML record has several values: {present}")
        name = record.get("n", "")
        if not isinstance(name, str):
            raise PayloadError("bad_senml", "SenML 'n' must be a string")
        sensor, quantity = _split_name(base_name + name)
        if not quantity:
            raise PayloadError("bad_senml", f"SenML name {base_name + name!r} has no quantity")
        t = base_time + _number(record, "t")
        if t < _RELATIVE_BELOW:
            t += now
        key = present[0]
        value = record[key]
        if key == "v":
            value = base_value + _number(record, "v")
        elif key == "vb" and not isinstance(value, bool):
            raise PayloadError("bad_senml", "SenML 'vb' must be a boolean")
        elif key in ("vs", "vd") and not isinstance(value, str):
            raise PayloadError("bad_senml", f"SenML '{key}' must be a string")
        reading = grouped.get((sensor, t))
        if reading is None:
            reading = grouped[(sensor, t)] = RawReading(values={}, ts_ns=to_ns(t), sensor_id=sensor)
        if quantity in reading.values:
            raise PayloadError("duplicate_key", f"SenML repeats {quantity!r} at one time")
        reading.values[quantity] = value
    if not grouped:
        raise PayloadError("no_values", "SenML pack carries no values")
    return list(grouped.values())
