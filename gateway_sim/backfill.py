"""Backfill: days of history written straight to InfluxDB with device timestamps, for
dashboards and query benchmarks. The schema is the ingester's: measurement = type id,
tags ``sensor_id`` and ``subdistrict``, one field per quantity plus the integer ``seq``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from gateway_sim.signals import City, _as_python, hash_keys, uniform
from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import FieldValue, encode_lines, encode_point
from sensornet.registry.store import DeviceInfo

BATCH = 5000
_IN_FLIGHT = 2


def schedule(
    city: City, idx: np.ndarray, interval_s: float, origin_s: float, start_s: float, end_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sensor index, time, seq) of every report in [start, end) of a history that began
    at ``origin_s``: report ``seq`` is due at origin + seq * interval + a per-sensor phase,
    ±5 % jitter; deterministic by seed, so windows can be generated one at a time."""
    first = max(0, int((start_s - origin_s) // interval_s) - 1)
    last = int((end_s - origin_s) // interval_s) + 1
    steps = np.arange(first, last + 1)
    sensors = np.repeat(idx, len(steps))
    seq = np.tile(steps, len(idx))
    phase = uniform(hash_keys(city.seed, city.key[sensors], 5)) * interval_s * 0.9
    jitter = (uniform(hash_keys(city.seed, city.key[sensors], seq, 6)) - 0.5) * 0.1 * interval_s
    t = np.round((origin_s + seq * interval_s + phase + jitter) * 1000) / 1000
    keep = (t >= start_s) & (t < end_s) & (t >= origin_s)
    return sensors[keep], t[keep], seq[keep]


def lines_for_type(
    city: City,
    catalogue: Catalogue,
    type_id: str,
    idx: np.ndarray,
    window: tuple[float, float, float],
) -> tuple[list[str], Counter[str]]:
    """Line protocol for sensors ``idx`` of one type over ``window`` (origin, start, end)."""
    sensor_type = catalogue.get(type_id)
    sensors, t, seq = schedule(city, idx, sensor_type.interval_s, *window)
    values = city.type_values(type_id, sensors, t)
    kinds = {q.id: q.kind for q in sensor_type.quantities.values()}
    columns = {k: _as_python(v, kinds[k]) for k, v in values.items()}
    ts_ns = (np.round(t * 1000).astype(np.int64) * 1_000_000).tolist()
    lines: list[str] = []
    counts: Counter[str] = Counter()
    for j, (i, s) in enumerate(zip(sensors.tolist(), seq.tolist(), strict=True)):
        device = city.fleet[i]
        fields: dict[str, FieldValue] = {k: col[j] for k, col in columns.items()}
        fields["seq"] = int(s)
        tags = {"sensor_id": device.id, "subdistrict": device.subdistrict}
        lines.append(encode_point(type_id, tags, fields, ts_ns[j]))
        counts[device.id] += 1
    return lines, counts


async def backfill(
    influx: InfluxClient,
    city: City,
    catalogue: Catalogue,
    days: float,
    end_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Counter[str]:
    """Write ``days`` of history ending at ``end_s`` (default now); returns points per
    sensor. Writes go out in batches of 5000 with two in flight."""
    end = end_s if end_s is not None else time.time()
    start = end - days * 86_400
    fleet: Sequence[DeviceInfo] = city.fleet
    by_type: dict[str, list[int]] = {}
    for i, d in enumerate(fleet):
        by_type.setdefault(d.type, []).append(i)
    total_estimate = sum(
        int(days * 86_400 / catalogue.get(t).interval_s) * len(ix) for t, ix in by_type.items()
    )
    written: Counter[str] = Counter()
    done = 0
    pending: set[asyncio.Task[None]] = set()
    for type_id, ix in by_type.items():
        # a day at a time keeps memory flat for long backfills
        day_start = start
        while day_start < end:
            day_end = min(end, day_start + 86_400)
            lines, counts = lines_for_type(
                city, catalogue, type_id, np.array(ix), (start, day_start, day_end)
            )
            for k in range(0, len(lines), BATCH):
                if len(pending) >= _IN_FLIGHT:
                    finished, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in finished:
                        task.result()
                body = encode_lines(lines[k : k + BATCH])
                pending.add(asyncio.create_task(influx.write(body)))
                done += len(lines[k : k + BATCH])
                if on_progress is not None:
                    on_progress(done, max(total_estimate, done))
            written.update(counts)
            day_start = day_end
    await asyncio.gather(*pending)
    return written
