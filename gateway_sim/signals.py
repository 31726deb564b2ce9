"""Plausible values for a quantity at a moment: a daily cycle inside the typical range,
plus noise. Deterministic for a given sensor, quantity and time."""

from __future__ import annotations

import math
import random
import zlib

from sensornet.catalogue import Quantity
from sensornet.lineprotocol import FieldValue

_SHANGHAI_UTC_OFFSET_H = 8


def daily_phase(ts_s: float) -> float:
    """0..1 activity of the city by local hour: low at 4 am, peaks at 8-9 am and 6 pm."""
    hour = ((ts_s / 3600) + _SHANGHAI_UTC_OFFSET_H) % 24
    morning = math.exp(-((hour - 8.5) ** 2) / 4)
    evening = math.exp(-((hour - 18) ** 2) / 5)
    base = 0.35 + 0.25 * math.sin((hour - 10) / 24 * 2 * math.pi)
    return max(0.0, min(1.0, base + 0.4 * max(morning, evening)))


def value_for(sensor_id: str, q: Quantity, ts_s: float) -> FieldValue:
    seed = zlib.crc32(f"{sensor_id}/{q.id}/{int(ts_s)}".encode())
    rng = random.Random(seed)
    if q.kind == "bool":
        return rng.random() < 0.02
    if q.kind == "string":
        return (q.allowed or ("ok",))[0]
    lo, hi = q.typical or (q.min or 0.0, q.max or 1.0)
    level = lo + (hi - lo) * daily_phase(ts_s)
    value = level + rng.gauss(0, (hi - lo) * 0.05)
    if q.min is not None:
        value = max(q.min, value)
    if q.max is not None:
        value = min(q.max, value)
    if q.kind == "int":
        return round(value)
    return round(value, 2)
