"""``sensornet bench broker-reload``: what one registration costs the single-node shape
(Mosquitto and its password file), split into its parts, up to 50,000 registered devices;
one JSON line.

A registration there (``sensornet.broker_auth.sync_broker``) is:
  platform  read every device's hash from the registry and write the password file
            (``broker_entries``, ``write_part`` + ``assemble``): O(registered)
  broker    on SIGHUP, re-read the password file (O(registered)) and re-check every
            connected client against it (O(connected)); measured as the broker's CPU
  confirm   the canary login that shows the reload is done (polled every 20 ms)
50,000 connections cannot exist here: one process may hold 20,000 file descriptors (hard
limit), the broker's included. So the broker's cost is measured on a grid (registered
with none connected; 50,000 registered with up to ``--max-connected`` connected, held by
processes of their own) and fitted as ``cpu = a + b*registered + c*connected``; points
the fit did not use check it, and the 50,000-connected figure is the fit's prediction.
The machine is shared: the broker's CPU time is steadier than wall time, and both are given.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.broker_auth import PasswdBench, password
from bench.hold_mqtt import Holders
from bench.procfs import process_cpu_s
from sensornet.broker_auth import broker_entries, issue_credentials
from sensornet.broker_files import (
    DEVICE_ITERATIONS,
    DEVICES,
    PASSWD,
    assemble,
    confirm,
    mosquitto_hash,
    password_lines,
    signal_reload,
    write_part,
)
from sensornet.registry.store import open_registry, upsert_devices
from wiring.parts import default_fleet

#: (registered, connected): the parse series, then the re-check series at 50,000 registered
FIT_POINTS = [(1_000, 0), (10_000, 0), (25_000, 0), (50_000, 0)]
FIT_POINTS += [(50_000, 4_000), (50_000, 8_000), (50_000, 12_000), (50_000, 16_000)]
#: measured, not used by the fit: each checks the prediction (18,000 as broker-coalesce)
CHECK_POINTS = [(10_000, 10_000), (18_000, 18_000), (50_000, 18_000)]


async def reload_once(bench: PasswdBench, pid: int) -> dict[str, float]:
    """One delivery as ``broker_files.deliver`` makes it, each part timed."""
    target = bench.target
    canary = secrets.token_urlsafe(24)
    canary_hash = mosquitto_hash(canary, iterations=DEVICE_ITERATIONS)
    t0 = time.perf_counter()

    def write() -> None:
        write_part(target.auth_dir, PASSWD, DEVICES, password_lines(bench.entries))
        assemble(target.auth_dir, canary_hash)

    await asyncio.to_thread(write)
    t1 = time.perf_counter()
    cpu0 = process_cpu_s(pid) or 0.0
    signal_reload(target.auth_dir)
    await confirm(target, canary)
    t2 = time.perf_counter()
    cpu = (process_cpu_s(pid) or 0.0) - cpu0
    return {"write_s": t1 - t0, "broker_cpu_s": cpu, "reload_wall_s": t2 - t1}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def point(
    tmp: Path, registered: int, connected: int, reloads: int, per_process: int
) -> dict[str, Any]:
    bench = PasswdBench(tmp / f"r{registered}-c{connected}", registered, DEVICE_ITERATIONS)
    await bench.start()
    pid = bench.broker.pid()
    assert pid is not None
    users = list(bench.entries)[:connected]
    holders = Holders(
        bench.broker.home,
        [("127.0.0.1", bench.broker.port)],
        {u: password(u) for u in users},
        per_process,
    )
    try:
        got = await asyncio.to_thread(holders.connected)
        assert got["connected"] == connected, got
        runs = [await reload_once(bench, pid) for _ in range(reloads)]
        still = await asyncio.to_thread(holders.still_connected)
    finally:
        await asyncio.to_thread(holders.close)
        bench.broker.stop()
    return {
        "registered": registered,
        "connected": connected,
        "still_connected": still,
        # a mean: /proc counts CPU in 10 ms ticks, too coarse for one reload
        "broker_cpu_ms": round(sum(r["broker_cpu_s"] for r in runs) / len(runs) * 1000, 1),
        "reload_wall_ms": round(median([r["reload_wall_s"] for r in runs]) * 1000, 1),
        "write_ms": round(median([r["write_s"] for r in runs]) * 1000, 1),
        "loadavg": os.getloadavg()[0],
    }


async def registry_read_ms(tmp: Path, registered: int) -> float:
    """``broker_entries`` over a registry of ``registered`` devices with credentials."""
    model = default_fleet(1)[0]
    fleet = [replace(model, id=f"D{i:06d}") for i in range(registered)]
    async with open_registry(f"sqlite+aiosqlite:///{tmp / 'registry.db'}") as engine:
        await upsert_devices(engine, fleet)
        await issue_credentials(engine, [d.id for d in fleet])
        times = []
        for _ in range(5):
            t = time.perf_counter()
            entries = await broker_entries(engine)
            times.append(time.perf_counter() - t)
        assert len(entries) == registered
    return round(median(times) * 1000, 1)


def fit(points: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Least squares ``broker_cpu_ms = a + b*registered + c*connected``."""
    x = np.array([[1.0, p["registered"], p["connected"]] for p in points])
    y = np.array([p["broker_cpu_ms"] for p in points])
    (a, b, c), *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(a), float(b), float(c)


async def run_bench(
    reloads: int, per_process: int, progress: Any, scale: float = 1.0
) -> dict[str, Any]:
    """``scale`` shrinks every size (a smoke test); the model still speaks of 50,000."""
    out: dict[str, Any] = {"bench": "broker-reload", "loadavg_start": os.getloadavg()[0]}
    measured: list[dict[str, Any]] = []
    grid = [(round(r * scale), round(c * scale)) for r, c in FIT_POINTS + CHECK_POINTS]
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-reload-") as tmp_name:
        tmp = Path(tmp_name)
        for registered, connected in grid:
            measured.append(await point(tmp, registered, connected, reloads, per_process))
            if progress:
                progress(str(measured[-1]))
        read_at = round(50_000 * scale)
        out["registry_read_ms"] = {
            "registered": read_at,
            "ms": await registry_read_ms(tmp, read_at),
        }
    a, b, c = fit(measured[: len(FIT_POINTS)])

    def predict(registered: int, connected: int) -> float:
        return round(a + b * registered + c * connected, 1)

    out["points"] = measured
    out["fit"] = {
        "fixed_ms": round(a, 2),
        "per_1000_registered_ms": round(b * 1000, 3),
        "per_1000_connected_ms": round(c * 1000, 3),
    }
    out["checks"] = [
        {
            "registered": p["registered"],
            "connected": p["connected"],
            "measured_ms": p["broker_cpu_ms"],
            "predicted_ms": predict(p["registered"], p["connected"]),
        }
        for p in measured[len(FIT_POINTS) :]
    ]
    out["model_50000"] = {
        "registered": 50_000,
        "connected": 50_000,
        "broker_cpu_ms": predict(50_000, 50_000),
        "of_which_parse_ms": round(b * 50_000, 1),
        "of_which_recheck_ms": round(c * 50_000, 1),
        # the platform's part, measured at the largest size (50,000 unless scaled)
        "platform_write_ms": measured[3]["write_ms"],
        "platform_registry_read_ms": out["registry_read_ms"]["ms"],
    }
    out["loadavg_end"] = os.getloadavg()[0]
    return out
