"""``sensornet bench query``: loads a stated volume of simulated history straight into a
private InfluxDB (the simulator's backfill), serves it through the
real API in its own process, and measures per endpoint the API's p50/p95 latency and that
of the same InfluxQL sent straight to InfluxDB, interleaved in the same run.

``overhead_ratio`` = API p50 / direct p50: what the API adds over the database itself.
Each one-query endpoint's InfluxQL is also sent through ``bench.forwarder``, a bare
forwarder in the API's place: ``hop_ratio`` is the floor one more process hop sets in that
run. Both sides use the same HTTP client (``sensornet.keepalive_http``, the one
``InfluxClient`` queries with) and both decode the JSON they get, so the API side differs
only by its extra hop and its own work. ``target`` judges each endpoint against the
query-overhead target (``endpoint_target``; docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from api import range_queries
from api.health_routes import INGEST_LAST_TWO, REJECTS
from api.latest_routes import page_queries
from api.range_routes import EPOCH
from bench.procfs import process_cpu_s
from gateway_sim.backfill import backfill
from gateway_sim.signals import City
from sensornet.catalogue import Catalogue, load_catalogue
from sensornet.district import load_district
from sensornet.errors import ConfigError
from sensornet.influx import InfluxClient
from sensornet.keepalive_http import Answer, KeepAlivePool
from sensornet.latest import DEVICE_STATUS, latest_params, latest_query
from sensornet.registry.keys import create_key
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from sensornet.storage_layout import HOUR, RAW, apply_storage_layout, backfill_aggregates
from wiring.parts import default_fleet, register_fleet
from wiring.services import InfluxDB, free_port

Direct = Callable[[InfluxClient], Awaitable[Any]]

#: The query-overhead target: a one-query endpoint's ``overhead_ratio`` may exceed the
#: forwarder's ``hop_ratio`` of the same run by at most ``HOP_ALLOWANCE``, and no endpoint's
#: API p50 may exceed its direct p50 by more than ``ADDED_MS_LIMIT`` milliseconds.
HOP_ALLOWANCE = 0.25
ADDED_MS_LIMIT = 1.0


@dataclass
class Case:
    name: str
    path: str
    params: dict[str, str]
    direct: Direct
    json: bool = True  # the body is decoded, as InfluxClient decodes InfluxDB's
    influxql: tuple[str, dict[str, Any]] | None = None  # the one query ``direct`` sends


def cases(catalogue: Catalogue, fleet: Sequence[DeviceInfo], now: datetime) -> list[Case]:
    air = catalogue.get("air_quality")
    sensor = next(d for d in fleet if d.type == "air_quality")
    day, week = now - timedelta(days=1), now - timedelta(days=7)
    hour = now.replace(minute=0, second=0, microsecond=0)
    by_id = sorted(fleet, key=lambda d: d.id)
    page = by_id[:1000]

    def latest_direct(by_type: dict[str, list[str]]) -> Direct:
        """The queries /latest sends for the same page."""

        async def run(influx: InfluxClient) -> Any:
            return await asyncio.gather(
                *(influx.query(latest_query(catalogue.get(t), len(ids), False),
                               latest_params(ids, None))
                  for t, ids in by_type.items())
            )  # fmt: skip

        return run

    def ranged(
        name: str,
        path: str,
        api_params: dict[str, str],
        q: str,
        params: dict[str, Any],
        json: bool = True,
    ) -> Case:
        """A case whose API answer comes from one InfluxQL query."""

        async def run(influx: InfluxClient) -> Any:
            return await influx.query(q, params, epoch="")  # as the API asks: RFC 3339 times

        return Case(name, path, api_params, run, json, (q, params))

    range_params = {"sensor_id": sensor.id, "after": EPOCH}  # as the API binds a first page
    health_types = sorted({d.type for d in fleet})

    async def health_direct(influx: InfluxClient) -> Any:
        await influx.query(INGEST_LAST_TWO)
        await influx.query(REJECTS)
        await influx.query(DEVICE_STATUS)
        return await latest_direct({t: [] for t in health_types})(influx)

    return [
        Case("latest_page_1000", "/latest", {"limit": "1000"},
             latest_direct(page_queries(page))),
        Case("latest_type", "/latest", {"type": "air_quality", "limit": "1000"},
             latest_direct(page_queries([d for d in by_id if d.type == "air_quality"][:1000]))),
        ranged("series_raw_1d", f"/sensors/{sensor.id}/series", {"start": day.isoformat()},
               range_queries.sensor_series(air, RAW, None, "mean"),
               range_params | {"start": day.isoformat(), "end": now.isoformat(),
                               "limit": 1000}),
        ranged("series_7d_1h", f"/sensors/{sensor.id}/series",
               {"start": week.isoformat(), "end": now.isoformat(), "step": "3600"},
               range_queries.sensor_series(air, HOUR, 3600, "mean"),
               range_params | {"start": week.isoformat(), "end": now.isoformat(),
                               "limit": 1000}),
        ranged("csv_raw_1d", f"/sensors/{sensor.id}/series.csv", {"start": day.isoformat(),
                                                                  "end": now.isoformat()},
               range_queries.sensor_series(air, RAW, None, "mean"),
               range_params | {"start": day.isoformat(), "end": now.isoformat(),
                               "limit": 200_000}, json=False),
        ranged("aggregates_7d_1h", "/aggregates",
               {"type": "air_quality", "quantity": "pm25", "start": week.isoformat(),
                "end": now.isoformat(), "step": "3600"},
               range_queries.subdistrict_aggregate(air, "pm25", HOUR, 3600, "mean", False),
               {"start": week.isoformat(), "end": now.isoformat()}),
        # open data ends at a finished hour (the API would cut ``now`` back to one)
        ranged("opendata_air_7d", "/open/datasets/air_quality_hourly/data",
               {"start": week.isoformat(), "end": hour.isoformat()},
               range_queries.subdistrict_aggregates(
                   air, ("pm25", "pm10", "no2", "o3", "co"), HOUR, 3600, "mean"),
               {"start": week.isoformat(), "end": hour.isoformat()}),
        Case("platform_health", "/platform/health", {}, health_direct),
    ]  # fmt: skip


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


async def measure(
    api: KeepAlivePool, influx: InfluxClient, case: Case, rounds: int, api_pid: int
) -> dict[str, Any]:
    """Interleaved; which side goes first alternates, so neither always finds InfluxDB
    just woken by the other. Also the API process's CPU per request over the measured
    rounds: steadier than latency on a shared machine, and what the API itself spends."""
    api_ms: list[float] = []
    direct_ms: list[float] = []
    target = f"{case.path}?{urlencode(case.params)}".rstrip("?")

    async def through_api() -> Answer:
        t0 = time.perf_counter()
        r = await api.request("GET", target)
        if case.json and r.status == 200:
            orjson.loads(r.body)
        api_ms.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise RuntimeError(f"{case.name}: API answered {r.status}: {r.text[:300]}")
        return r

    async def direct() -> None:
        t0 = time.perf_counter()
        await case.direct(influx)
        direct_ms.append((time.perf_counter() - t0) * 1000)

    cpu_start: float | None = None
    for i in range(rounds + 4):
        if i == 4:
            cpu_start = process_cpu_s(api_pid)
        if i % 2:
            await direct()
            r = await through_api()
        else:
            r = await through_api()
            await direct()
        if i < 4:  # warm-up rounds
            api_ms.clear()
            direct_ms.clear()
    cpu_end = process_cpu_s(api_pid)
    api_p50, direct_p50 = statistics.median(api_ms), statistics.median(direct_ms)
    return {
        "api_p50_ms": round(api_p50, 2),
        "api_p95_ms": round(_pct(api_ms, 0.95), 2),
        "direct_p50_ms": round(direct_p50, 2),
        "direct_p95_ms": round(_pct(direct_ms, 0.95), 2),
        "overhead_ratio": round(api_p50 / direct_p50, 3),
        "api_cpu_ms_per_request": None
        if cpu_start is None or cpu_end is None
        else round((cpu_end - cpu_start) * 1000 / rounds, 3),
        "bytes": len(r.body),
    }


def endpoint_target(figures: dict[str, Any]) -> dict[str, Any]:
    """The verdict of one endpoint from the figures ``measure`` reported for it (and the
    ``hop`` figures of a one-query endpoint), as they are printed, so anyone can redo it
    from the JSON line. An endpoint of several queries has no forwarder floor (the forwarder
    passes one query on): only its added milliseconds are judged."""
    added_ms = round(figures["api_p50_ms"] - figures["direct_p50_ms"], 2)
    hop = figures.get("hop")
    ratio_limit = None if hop is None else round(hop["hop_ratio"] + HOP_ALLOWANCE, 3)
    ratio_met = None if ratio_limit is None else figures["overhead_ratio"] <= ratio_limit
    added_ms_met = added_ms <= ADDED_MS_LIMIT
    return {
        "ratio_limit": ratio_limit,
        "ratio_met": ratio_met,
        "added_ms": added_ms,
        "added_ms_limit": ADDED_MS_LIMIT,
        "added_ms_met": added_ms_met,
        "met": ratio_met is not False and added_ms_met,
    }


async def run_bench(
    sensors: int,
    days: float,
    rounds: int,
    log: Callable[[str], None],
    only: Sequence[str] = (),
) -> dict[str, Any]:
    catalogue = load_catalogue()
    fleet = default_fleet(sensors)
    known = [c.name for c in cases(catalogue, fleet, datetime.now(UTC))]
    if unknown := set(only) - set(known):
        raise ConfigError(f"unknown endpoint case {sorted(unknown)}; known: {known}")
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-") as tmp:
        home = Path(tmp)
        influxd = InfluxDB(name="influxd", home=home / "influxdb", port=free_port(),
                           rpc_port=free_port())  # fmt: skip
        influxd.start()
        try:
            settings = Settings(
                state_dir=home, influx_url=f"http://127.0.0.1:{influxd.port}",
                influx_db="bench", api_port=free_port(), opendata_burst=1_000_000,
                opendata_rate_per_s=1_000_000.0, _env_file=None,
            )  # fmt: skip
            return await _bench(settings, catalogue, fleet, days, rounds, log, only)
        finally:
            influxd.stop()


async def _bench(
    settings: Settings, catalogue: Catalogue, fleet: list[DeviceInfo], days: float,
    rounds: int, log: Callable[[str], None], only: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    await register_fleet(settings, fleet)
    # Every data route needs a key: the API side pays for authentication like any client.
    async with open_registry(settings.registry_database_url) as registry:
        _, secret = await create_key(registry, "viewer", "bench", "bench")
    now = datetime.now(UTC).replace(microsecond=0)
    async with InfluxClient(settings.influx_url, settings.influx_db, timeout_s=600) as influx:
        await apply_storage_layout(influx, settings, catalogue)
        t0 = time.perf_counter()
        # the simulator's backfill: the schema and signals the ingester would have stored
        city = City(fleet, catalogue, load_district())
        written = await backfill(influx, city, catalogue, days, end_s=now.timestamp())
        points = sum(written.values())
        load_s = time.perf_counter() - t0
        log(f"loaded {points} points in {load_s:.0f} s")
        t0 = time.perf_counter()
        await backfill_aggregates(influx, catalogue, now - timedelta(days=days, hours=1),
                                  now + timedelta(hours=1), targets=(HOUR,))  # fmt: skip
        backfill_s = time.perf_counter() - t0
        log(f"hourly aggregates in {backfill_s:.0f} s")
        env = os.environ | {
            f"SENSORNET_{k.upper()}": json.dumps(v) if isinstance(v, list | dict) else str(v)
            for k, v in settings.model_dump(mode="json").items()
            if v is not None
        }
        async with contextlib.AsyncExitStack() as stack:
            api_server, api = await stack.enter_async_context(_served(
                "api.app:create_app", settings.api_port, env, "/open/datasets",
                {"Authorization": f"Bearer {secret}"},
            ))  # fmt: skip
            # a forwarder in the API's place: the floor for one more hop
            hop_server, hop_client = await stack.enter_async_context(_served(
                "bench.forwarder:create_app", free_port(), env,
                "/query?q=SHOW+DATABASES", {},
            ))  # fmt: skip
            results: dict[str, dict[str, Any]] = {}
            for case in cases(catalogue, fleet, now):
                if only and case.name not in only:
                    continue
                results[case.name] = await measure(api, influx, case, rounds, api_server.pid)
                if case.influxql is not None:
                    q, params = case.influxql  # the very request ``direct`` sends
                    target = "/query?" + influx.query_form(q, params, epoch="")
                    through_hop = Case(case.name, target, {}, case.direct)
                    hop_figures = await measure(
                        hop_client, influx, through_hop, rounds, hop_server.pid
                    )
                    results[case.name]["hop"] = {
                        "hop_p50_ms": hop_figures["api_p50_ms"],
                        "direct_p50_ms": hop_figures["direct_p50_ms"],
                        "hop_ratio": hop_figures["overhead_ratio"],
                    }
                results[case.name]["target"] = endpoint_target(results[case.name])
                log(f"{case.name}: {results[case.name]}")
    return {
        "bench": "query",
        "sensors": len(fleet),
        "days": days,
        "points": points,
        "load_s": round(load_s, 1),
        "load_points_per_s": round(points / load_s),
        "backfill_1h_s": round(backfill_s, 1),
        "rounds": rounds,
        "endpoints": results,
        "target_met": all(r["target"]["met"] for r in results.values()),
        "target_missed": [name for name, r in results.items() if not r["target"]["met"]],
        "series_7d_1h_api_p95_ms": results.get("series_7d_1h", {}).get("api_p95_ms"),
    }


@contextlib.asynccontextmanager
async def _served(
    factory: str, port: int, env: dict[str, str], ready_path: str, headers: dict[str, str]
) -> AsyncIterator[tuple[subprocess.Popen[bytes], KeepAlivePool]]:
    """An ASGI app under uvicorn in its own process, as ``sensornet api`` serves the API
    but logging warnings only (``sensornet api`` also writes uvicorn's access log line per
    request, which the bench leaves out), and a client to it once ``ready_path`` answers 200."""
    # e.g. "-m cProfile -o prof.out" to profile the API under the bench (it is stopped
    # with SIGINT, after which cProfile still writes its file)
    python_args = os.environ.get("SENSORNET_BENCH_PYTHON_ARGS", "").split()
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, *python_args, "-m", "uvicorn", "--factory", factory,
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    client = KeepAlivePool(f"http://127.0.0.1:{port}", timeout_s=120, headers=headers)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if (await client.request("GET", ready_path)).status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{factory} did not start within 60 s")
            await asyncio.sleep(0.2)
        yield server, client
    finally:
        await client.aclose()
        server.send_signal(signal.SIGINT)
        server.wait(30)
