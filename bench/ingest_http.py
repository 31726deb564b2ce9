"""``sensornet bench ingest --input http``: readings pushed to the ingester's HTTP input in
requests of ``batch`` readings each, every request answered only once its readings are
durable, against the InfluxDB write ceiling measured in the same run on the same points.

1. Start InfluxDB; register a fleet and give every sensor its registry credentials.
2. Start ``sensornet ingest`` with ``SENSORNET_INGEST_INPUTS=http`` (its own process).
3. ``concurrency`` keep-alive connections push every reading, each request with its
   device's own HTTP Basic credentials; the time is from the first request sent to the
   last answer. A 429/503 is retried after its Retry-After (counted, not lost).
4. Write the same points straight to InfluxDB in batches of 5000 over one connection.

Besides the ratio it reports the ingester process's CPU per reading (from /proc), which
a shared machine disturbs far less than the rates.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.ingest import _env, line_of, start_ingester, write_ceiling
from bench.private import bench_settings, private_influxd
from bench.procfs import peak_rss_mb, process_cpu_s
from gateway_sim.synthetic import Reading, make_readings
from sensornet.accounting import count_stored
from sensornet.broker_auth import issue_credentials
from sensornet.influx import InfluxClient
from sensornet.keepalive_http import KeepAlivePool
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet
from wiring.services import free_port


def requests_of(readings: Sequence[Reading], batch: int) -> list[tuple[str, bytes]]:
    """``(device id, body)``: each device's readings in arrays of ``batch``, in time order."""
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in readings:
        by_device[r.device.id].append({"ts": r.ts_ms, "seq": r.seq, **r.values})
    out = []
    for device_id, items in by_device.items():
        for i in range(0, len(items), batch):
            out.append((device_id, orjson.dumps(items[i : i + batch])))
    return out


async def run_http_bench(
    readings_n: int, batch: int, sensors: int, concurrency: int, progress: Any = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-") as tmp:
        root = Path(tmp)
        settings = bench_settings(root, ingest_inputs=["http"], ingest_http_port=free_port())
        influxd = private_influxd(root, settings)
        influxd.start()
        try:
            return await _measure(settings, readings_n, batch, sensors, concurrency, progress)
        finally:
            influxd.stop()


async def _measure(
    settings: Settings, n: int, batch: int, sensors: int, concurrency: int, progress: Any
) -> dict[str, Any]:
    fleet = default_fleet(sensors)
    types = {d.type for d in fleet}
    await register_fleet(settings, fleet)
    async with open_registry(settings.registry_database_url) as registry:
        passwords = await issue_credentials(registry, [d.id for d in fleet], "bench")
    auth = {
        device: "Basic " + base64.b64encode(f"{device}:{password}".encode()).decode()
        for device, password in passwords.items()
    }
    readings = list(make_readings(fleet, n))
    requests = requests_of(readings, batch)
    async with InfluxClient(settings.influx_url, settings.influx_db, timeout_s=60) as influx:
        await influx.create_database()
        await influx.create_database("ceiling")
        env = {
            **os.environ,
            **_env(settings),
            "SENSORNET_INGEST_INPUTS": "http",
            "SENSORNET_INGEST_HTTP_PORT": str(settings.ingest_http_port),
        }
        log_path = settings.state_dir / "ingester.log"
        proc = start_ingester(env, log_path)
        pool = KeepAlivePool(
            f"http://127.0.0.1:{settings.ingest_http_port}",
            max_connections=concurrency,
            timeout_s=120.0,
        )
        try:
            await _until_listening(pool, proc, log_path)
            if progress:
                progress(f"pushing {n} readings in {len(requests)} requests of {batch}")
            statuses: Counter[int] = Counter()
            cpu_before = process_cpu_s(proc.pid) or 0.0
            started = time.monotonic()
            await _push_all(pool, requests, auth, concurrency, statuses)
            elapsed = time.monotonic() - started
            cpu = (process_cpu_s(proc.pid) or 0.0) - cpu_before
            rss = peak_rss_mb(proc.pid)
        finally:
            await pool.aclose()
            proc.terminate()
            proc.wait(timeout=60)
        stored = await count_stored(influx, types)
        lines = [line_of(r) for r in readings]
        ceiling = await write_ceiling(influx, lines, "ceiling")
    rate = n / elapsed
    return {
        "bench": "ingest",
        "input": "http",
        "readings_sent": n,
        "requests": len(requests),
        "batch": batch,
        "concurrency": concurrency,
        "sensors": sensors,
        "readings_stored": stored,
        "lost": n - stored,
        "readings_per_s": round(rate),
        "ceiling_points_per_s": round(ceiling),
        "ratio": round(rate / ceiling, 3),
        "retried": {str(k): v for k, v in sorted(statuses.items()) if k != 200},
        # the ingester's own CPU per reading pushed: steadier than rates on a busy machine
        "ingester_cpu_us_per_reading": round(cpu / n * 1e6, 2),
        "peak_rss_mb": round(rss, 1),
        "push_s": round(elapsed, 2),
    }


async def _until_listening(
    pool: KeepAlivePool, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = await asyncio.to_thread(log_path.read_text, errors="replace")
            raise RuntimeError(f"ingester exited: {text[-2000:]}")
        try:
            if (await pool.request("GET", "/healthz")).status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the ingester's HTTP input did not listen within 60 s")


async def _push_all(
    pool: KeepAlivePool,
    requests: list[tuple[str, bytes]],
    auth: dict[str, str],
    concurrency: int,
    statuses: Counter[int],
) -> None:
    queue = iter(requests)

    async def worker() -> None:
        for device_id, body in queue:
            target = f"/v1/devices/{device_id}/readings"
            headers = {"Authorization": auth[device_id]}
            while True:
                answer = await pool.request("POST", target, body, "application/json", headers)
                statuses[answer.status] += 1
                if answer.status == 200:
                    break
                if answer.status not in (429, 503):
                    raise RuntimeError(f"{target}: {answer.status} {answer.text[:300]}")
                await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
