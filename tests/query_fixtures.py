"""Simulated history written straight into InfluxDB with the project's encoder, for query,
alarm and dashboard tests (no ingester needed to test reads)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import FieldValue, encode_lines, encode_point
from sensornet.registry.store import DeviceInfo


def sample_values(catalogue: Catalogue, type_id: str, rng: random.Random) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = {}
    for q in catalogue.get(type_id).quantities.values():
        if q.kind == "float" and q.typical:
            out[q.id] = round(rng.uniform(*q.typical), 3)
        elif q.kind == "int" and q.typical:
            out[q.id] = rng.randint(int(q.typical[0]), int(q.typical[1]))
        elif q.kind == "bool":
            out[q.id] = rng.random() < 0.3
        else:
            out[q.id] = (q.allowed or ("x",))[0]
    return out


async def write_history(
    influx: InfluxClient,
    catalogue: Catalogue,
    fleet: Sequence[DeviceInfo],
    *,
    hours: float,
    end: datetime | None = None,
    step_s: float | None = None,
    seed: int = 1,
    batch: int = 5000,
) -> int:
    """Readings of every sensor of ``fleet`` at its type's interval (or ``step_s``) over the
    ``hours`` before ``end``. Returns the number of points written."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC)
    start = end - timedelta(hours=hours)
    lines: list[str] = []
    written = 0
    for device in fleet:
        step = step_s or catalogue.get(device.type).interval_s
        t = start.timestamp() + rng.uniform(0, step)
        while t <= end.timestamp():
            lines.append(
                encode_point(
                    device.type,
                    {"sensor_id": device.id, "subdistrict": device.subdistrict},
                    sample_values(catalogue, device.type, rng),
                    int(t * 1e9),
                )
            )
            t += step
            if len(lines) >= batch:
                await influx.write(encode_lines(lines))
                written += len(lines)
                lines = []
    if lines:
        await influx.write(encode_lines(lines))
        written += len(lines)
    return written
