"""``sensornet bench cluster-auth``: device logins on the RabbitMQ cluster answered by the
platform from the registry (the scaled shape), with a fleet connected; one JSON line.

1. A 3-node cluster whose HTTP auth backend points at ``api/broker_auth_app.py`` (served
   in this process), a registry with ``--connected`` devices and their credentials.
2. Storm: every device connects (spread over the nodes, held open), then all disconnect
   and connect again; for each storm, logins/s and how many registry queries the login
   cache made (the second storm should make none per device).
3. ``--register`` new devices one by one, each registered in the registry (credentials
   issued) and then connected on a node, until it is accepted: latency of the first and
   last 100 (a registration costs no broker reload, so the last should be no slower).
The machine is shared: compare within one run.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.broker_auth import Held, still_connected
from sensornet.broker_auth import issue_credentials
from sensornet.broker_files import connack
from sensornet.mqtt_wire import connect_packet
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings
from wiring.broker_auth_service import auth_url, run_broker_auth
from wiring.parts import default_fleet
from wiring.rabbitmq import RabbitCluster
from wiring.services import free_port


def devices(prefix: str, n: int) -> list[DeviceInfo]:
    model = default_fleet(1)[0]
    return [replace(model, id=f"{prefix}{i:06d}") for i in range(n)]


async def hold(endpoints: list[tuple[str, int]], creds: dict[str, str], refused: list[str]) -> Held:
    """Connect every device and keep it connected. A refusal under load (the broker's
    request to the auth endpoint timed out: RabbitMQ then denies) is retried, as a device
    does, and recorded in ``refused``."""
    held: Held = []
    gate = asyncio.Semaphore(100)

    async def one(i: int, user: str) -> None:
        host, port = endpoints[i % len(endpoints)]
        for attempt in range(5):
            async with gate:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(connect_packet(f"held-{user}", user, creds[user], keepalive=0))
                await writer.drain()
                ack = await reader.readexactly(4)
            if ack[3] == 0:
                held.append((reader, writer))
                return
            refused.append(user)
            writer.close()
            await asyncio.sleep(0.5 * 2**attempt)
        raise RuntimeError(f"{user} refused 5 times: {ack[3]}")

    await asyncio.gather(*(one(i, u) for i, u in enumerate(sorted(creds))))
    return held


async def release(held: Held) -> None:
    for _, writer in held:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in held), return_exceptions=True)


async def login_stats(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    r = await client.get(f"{auth_url(settings)}/stats")
    result: dict[str, Any] = r.json()
    return result


async def run_bench(
    connected: int, register: int, budget_s: float, progress: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-auth-") as tmp:
        root = Path(tmp)
        settings = Settings(state_dir=root, broker_auth_port=free_port(), _env_file=None)
        cluster = RabbitCluster(root / "rabbitmq", 3, auth_url=auth_url(settings))
        cluster.start()
        stop, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(run_broker_auth(settings, stop, ready))
        try:
            await ready.wait()
            return await _measure(settings, cluster, connected, register, budget_s, progress)
        finally:
            stop.set()
            await server
            cluster.stop()


async def _measure(
    settings: Settings,
    cluster: RabbitCluster,
    connected: int,
    register: int,
    budget_s: float,
    progress: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "cluster-auth",
        "nodes": len(cluster.nodes),
        "connected": connected,
        "loadavg_start": os.getloadavg()[0],
    }
    endpoints = cluster.mqtt_endpoints()
    async with open_registry(settings.registry_database_url) as registry:
        fleet = devices("D", connected)
        await upsert_devices(registry, fleet)
        creds = await issue_credentials(registry, [d.id for d in fleet])
        async with httpx.AsyncClient(timeout=30) as client:
            for storm in ("first_storm", "reconnect_storm"):
                before = await login_stats(client, settings)
                t0 = time.perf_counter()
                refused: list[str] = []
                held = await hold(endpoints, creds, refused)
                elapsed = time.perf_counter() - t0
                after = await login_stats(client, settings)
                out[storm] = {
                    "logins": after["logins"] - before["logins"],
                    "logins_per_s": round(connected / elapsed),
                    "refused_then_retried": len(refused),
                    "registry_device_queries": after["device_queries"] - before["device_queries"],
                    "registry_change_queries": after["change_queries"] - before["change_queries"],
                }
                if progress:
                    progress(f"{storm}: {out[storm]}")
                if storm == "first_storm":
                    await release(held)
            latencies: list[float] = []
            registry_s: list[float] = []
            start = time.perf_counter()
            new = devices("N", register)
            for i, device in enumerate(new):
                t = time.perf_counter()
                await upsert_devices(registry, [device])
                password = (await issue_credentials(registry, [device.id]))[device.id]
                registry_s.append(time.perf_counter() - t)
                host, port = endpoints[i % len(endpoints)]
                while await asyncio.to_thread(connack, host, port, device.id, password) != 0:
                    if time.perf_counter() - t > 30:
                        raise RuntimeError(f"{device.id} never accepted")
                latencies.append(time.perf_counter() - t)
                if time.perf_counter() - start > budget_s:
                    break
            first, last = latencies[:100], latencies[-100:]
            out["one_by_one"] = {
                "registered": len(latencies),
                "of": register,
                "total_s": round(time.perf_counter() - start, 2),
                "first_100_ms": round(sum(first) / len(first) * 1000, 1),
                "last_100_ms": round(sum(last) / len(last) * 1000, 1),
                "max_ms": round(max(latencies) * 1000, 1),
                # of which the registry's own writes (register + issue credentials)
                "registry_ms": round(sum(registry_s) / len(registry_s) * 1000, 1),
                "broker_reloads": 0,
            }
            out["still_connected"] = await still_connected(held)
            await release(held)
            out["login_cache"] = await login_stats(client, settings)
    out["loadavg_end"] = os.getloadavg()[0]
    return out
