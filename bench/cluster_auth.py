"""``sensornet bench cluster-auth``: device logins on the RabbitMQ cluster answered by the
platform from the registry (the scaled shape), with a fleet connected; one JSON line.

Three kinds of process, as in a deployment: the 3-node cluster, the login endpoint
(``sensornet broker auth-serve``, its own process, reading the registry file), and the
connected fleet (``bench.hold_mqtt``, ``--per-process`` devices per process: one process
may hold 20,000 file descriptors here). This process only registers devices and times.

1. A registry with ``--connected`` devices and their credentials.
2. Storm: every device connects (spread over the nodes, held open), then all disconnect
   and connect again; for each storm, logins/s and the registry queries the login cache
   made per login (the second storm should make none).
3. ``--register`` new devices one by one, each registered as the API does (sensor,
   credentials and audit in one commit, ``register_with_credentials``; then
   ``apply_to_broker``, which in this shape reads and reloads nothing) and connected on a node
   until accepted: latency of the first and last 100, and what the registry's write
   took. Then: how many of the fleet are still connected (none disturbed).
The machine is shared: compare within one run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.hold_mqtt import Holders
from sensornet import broker_coalesce
from sensornet.broker_auth import (
    apply_to_broker,
    broker_target,
    issue_credentials,
    register_with_credentials,
)
from sensornet.broker_files import connack
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.registry.schemas import SensorIn
from sensornet.registry.service import Registry
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings
from wiring.broker_auth_service import auth_url
from wiring.parts import default_fleet
from wiring.rabbitmq import RabbitCluster
from wiring.services import free_port


def devices(prefix: str, n: int) -> list[DeviceInfo]:
    model = default_fleet(1)[0]
    return [replace(model, id=f"{prefix}{i:06d}") for i in range(n)]


def spec(device: DeviceInfo) -> SensorIn:
    return SensorIn(
        id=device.id,
        type=device.type,
        subdistrict=device.subdistrict,
        lat=device.lat,
        lon=device.lon,
        status="active",
    )


async def login_stats(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    r = await client.get(f"{auth_url(settings)}/stats")
    result: dict[str, Any] = r.json()
    return result


def per_login(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    logins = after["logins"] - before["logins"]
    queries = after["device_queries"] - before["device_queries"]
    return {
        "logins": logins,
        "registry_device_queries": queries,
        "registry_queries_per_login": round(queries / logins, 3) if logins else None,
        "registry_change_queries": after["change_queries"] - before["change_queries"],
    }


def start_endpoint(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``sensornet broker auth-serve`` in its own process, on the bench's registry."""
    env = {
        **os.environ,
        "SENSORNET_STATE_DIR": str(settings.state_dir),
        "SENSORNET_REGISTRY_URL": settings.registry_database_url,
        "SENSORNET_BROKER_AUTH_HOST": settings.broker_auth_host,
        "SENSORNET_BROKER_AUTH_PORT": str(settings.broker_auth_port),
        "SENSORNET_BROKER_LOGINS": "registry",
    }
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "cli.main", "broker", "auth-serve"]
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_endpoint(client: httpx.AsyncClient, settings: Settings, proc: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"auth-serve exited with {proc.returncode}")
        try:
            if (await client.get(f"{auth_url(settings)}/stats")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("auth-serve did not answer in 60 s")


async def run_bench(
    connected: int, register: int, budget_s: float, progress: Any, per_process: int = 5000
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-auth-") as tmp:
        root = Path(tmp)
        settings = Settings(
            state_dir=root,
            broker_auth_port=free_port(),
            broker_logins="registry",
            _env_file=None,
        )
        async with open_registry(settings.registry_database_url) as registry:
            fleet = devices("D", connected)
            await upsert_devices(registry, fleet)
            creds = await issue_credentials(registry, [d.id for d in fleet])
        cluster = RabbitCluster(root / "rabbitmq", 3, auth_url=auth_url(settings))
        cluster.start()
        endpoint = start_endpoint(settings, root / "auth-serve.log")
        try:
            return await _measure(
                settings, cluster, creds, register, budget_s, progress, endpoint, per_process
            )
        finally:
            endpoint.terminate()
            endpoint.wait(60)
            cluster.stop()


async def _measure(
    settings: Settings,
    cluster: RabbitCluster,
    creds: dict[str, str],
    register: int,
    budget_s: float,
    progress: Any,
    endpoint: Any,
    per_process: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "cluster-auth",
        "nodes": len(cluster.nodes),
        "connected": len(creds),
        "per_process": per_process,
        "loadavg_start": os.getloadavg()[0],
    }
    endpoints = cluster.mqtt_endpoints()
    workdir = settings.state_dir
    async with httpx.AsyncClient(timeout=30) as client:
        await wait_endpoint(client, settings, endpoint)
        for storm in ("first_storm", "reconnect_storm"):
            before = await login_stats(client, settings)
            holders = Holders(workdir, endpoints, creds, per_process)
            try:
                got = await asyncio.to_thread(holders.connected)
            except BaseException:
                holders.close()
                raise
            after = await login_stats(client, settings)
            out[storm] = {
                "connected": got["connected"],
                "logins_per_s": round(got["connected"] / got["elapsed_s"]),
                "refused_then_retried": got["refused_then_retried"],
                **per_login(before, after),
                "loadavg": os.getloadavg()[0],
            }
            if progress:
                progress(f"{storm}: {out[storm]}")
            if storm == "first_storm":
                await asyncio.to_thread(holders.close)
        try:
            before = await login_stats(client, settings)
            out["one_by_one"] = await one_by_one(settings, endpoints, register, budget_s, progress)
            out["one_by_one"].update(per_login(before, await login_stats(client, settings)))
            out["still_connected"] = await asyncio.to_thread(holders.still_connected)
        finally:
            await asyncio.to_thread(holders.close)
        out["login_cache"] = await login_stats(client, settings)
    out["loadavg_end"] = os.getloadavg()[0]
    return out


def ms(values: list[float]) -> float:
    return round(sum(values) / len(values) * 1000, 1)


async def accepted(host: str, port: int, user: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(connack, host, port, user, password) == 0
    except OSError:
        return False


async def one_by_one(
    settings: Settings,
    endpoints: list[tuple[str, int]],
    register: int,
    budget_s: float,
    progress: Any,
) -> dict[str, Any]:
    """Register each new device as the API does and wait until it can connect."""
    target = broker_target(settings)
    latencies: list[float] = []
    registry_s: list[float] = []
    retries = 0  # a refusal or no answer in 5 s, then connected again
    _, reloads_before = broker_coalesce.stats(target.auth_dir)
    start = time.perf_counter()
    async with open_registry(settings.registry_database_url) as engine:
        registry = Registry(engine, load_catalogue(), load_district())
        for i, device in enumerate(devices("N", register)):
            t = time.perf_counter()
            _, password = await register_with_credentials(registry, spec(device), "bench")
            await apply_to_broker(engine, target)
            registry_s.append(time.perf_counter() - t)
            host, port = endpoints[i % len(endpoints)]
            while await accepted(host, port, device.id, password) is False:
                retries += 1
                if time.perf_counter() - t > 30:
                    raise RuntimeError(f"{device.id} never accepted")
            latencies.append(time.perf_counter() - t)
            if progress and len(latencies) % 1000 == 0:
                progress(f"registered {len(latencies)}: last 100 {ms(latencies[-100:])} ms")
            if time.perf_counter() - start > budget_s:
                break
    _, reloads_after = broker_coalesce.stats(target.auth_dir)
    return {
        "registered": len(latencies),
        "of": register,
        "each_connected": len(latencies),
        "retried": retries,
        "total_s": round(time.perf_counter() - start, 2),
        "first_100_ms": ms(latencies[:100]),
        "last_100_ms": ms(latencies[-100:]),
        "max_ms": round(max(latencies) * 1000, 1),
        # of which the registry's write (sensor + credentials + audit, one commit)
        "registry_first_100_ms": ms(registry_s[:100]),
        "registry_last_100_ms": ms(registry_s[-100:]),
        "broker_reloads": reloads_after - reloads_before,
        "loadavg": os.getloadavg()[0],
    }
