"""``sensornet bench cluster``: the scaled shape's drain, 1, 2 and 3 ingesters on a
3-node RabbitMQ cluster, against two ceilings measured in the same run; one JSON line.

1. Start InfluxDB and a private 3-node cluster (``wiring.rabbitmq``); register a fleet.
2. Fill the readings quorum queue with N readings (AMQP publishes to ``amq.topic`` with
   the devices' routing keys, publisher confirms: what the MQTT plugin does for a device).
3. Ceilings: the cluster's bare drain (an aiormq consumer with the ingester's prefetch that
   acknowledges without writing) and InfluxDB's write rate for the same points (batches
   of 5000, one connection).
4. For 1, 2, 3 ingesters (``sensornet ingest`` processes, ``SENSORNET_INGEST_INPUTS=amqp``,
   one database each): fill again, start them, time from the first message any of them
   took to the last batch any of them acknowledged; count what InfluxDB holds.

``ratio`` is one ingester's rate over the lower ceiling (target >= 0.5); ``lost`` sums,
over the rounds, the readings acknowledged to the publisher and not stored. On 2 shared
cores more ingesters need not add throughput: the curve is reported as measured.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiormq
import httpx

from bench.ingest import _metrics, line_of, write_ceiling
from bench.private import bench_settings, private_influxd
from gateway_sim.synthetic import make_readings, messages
from ingest.inputs.amqp import prefetch
from sensornet.accounting import count_stored
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from sensornet.topics import topic_of_routing_key
from wiring.parts import default_fleet, register_fleet
from wiring.rabbitmq import ADMIN_USER, READINGS_QUEUE, RabbitCluster
from wiring.services import free_port

CONFIRM_WINDOW = 2000


async def fill(url: str, prefix: str, fleet: list[Any], n: int) -> float:
    """Publish N single readings with confirms; returns the seconds it took."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.confirm_delivery()
        properties = aiormq.spec.Basic.Properties(delivery_mode=2)
        pending = []
        started = time.monotonic()
        for topic, payload in messages(prefix, make_readings(fleet, n), 1):
            key = topic_of_routing_key(topic.decode())  # the swap is its own inverse
            pending.append(
                channel.basic_publish(
                    payload, exchange="amq.topic", routing_key=key, properties=properties
                )
            )
            if len(pending) >= CONFIRM_WINDOW:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return time.monotonic() - started
    finally:
        await connection.close()


async def bare_drain(url: str, n: int, window: int) -> float:
    """Consume N with the ingester's prefetch, acknowledging without writing: readings/s."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=window)
        done = asyncio.Event()
        got = 0
        step = max(1, window // 4)
        started = 0.0

        async def on(message: aiormq.abc.DeliveredMessage) -> None:
            nonlocal got, started
            if got == 0:
                started = time.monotonic()
            got += 1
            if got % step == 0 or got >= n:
                await channel.basic_ack(message.delivery_tag, multiple=True)  # type: ignore[arg-type]
            if got >= n:
                done.set()

        await channel.basic_consume(READINGS_QUEUE, on, no_ack=False)
        async with asyncio.timeout(max(120.0, n / 500)):
            await done.wait()
        return n / (time.monotonic() - started)
    finally:
        await connection.close()


async def drain_with(
    settings: Settings, nodes: str, ingesters: int, n: int, database: str
) -> dict[str, Any]:
    """``ingesters`` processes drain the queue; each gets the same settings but a name."""
    ports = [free_port() for _ in range(ingesters)]
    procs = []
    logs = []
    for i, port in enumerate(ports):
        env = {
            **os.environ,
            "SENSORNET_STATE_DIR": str(settings.state_dir),
            "SENSORNET_INFLUX_URL": settings.influx_url,
            "SENSORNET_INFLUX_DB": database,
            "SENSORNET_INGEST_CLIENT_ID": f"bench-{ingesters}-{i}",
            "SENSORNET_INGEST_METRICS_PORT": str(port),
            "SENSORNET_REGISTRY_URL": settings.registry_database_url,
            "SENSORNET_INGEST_INPUTS": "amqp",
            "SENSORNET_AMQP_URLS": nodes,
            "SENSORNET_MQTT_INGEST_PASSWORD": settings.mqtt_ingest_password.get_secret_value(),
            "SENSORNET_INGEST_BATCH_SIZE": str(settings.ingest_batch_size),
        }
        log_path = settings.state_dir / f"ingester-{ingesters}-{i}.log"
        logs.append(log_path)
        with log_path.open("wb") as log:
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220 - long-lived child processes
                    [sys.executable, "-m", "cli.main", "ingest"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + max(180.0, n / 500)
            while time.monotonic() < deadline:
                for proc, log_path in zip(procs, logs, strict=True):
                    if proc.poll() is not None:
                        tail = log_path.read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"ingester exited: {tail}")
                figures = [await _metrics(client, port) for port in ports]
                done = sum(m.get("sensornet_ingest_received_readings_total", 0) for m in figures)
                if done >= n:
                    started = min(
                        m["sensornet_ingest_first_message_timestamp_seconds"]
                        for m in figures
                        if m.get("sensornet_ingest_first_message_timestamp_seconds")
                    )
                    ended = max(
                        m.get("sensornet_ingest_last_batch_timestamp_seconds", 0) for m in figures
                    )
                    share = [
                        int(m.get("sensornet_ingest_received_readings_total", 0)) for m in figures
                    ]
                    return {
                        "ingesters": ingesters,
                        "readings_per_s": n / (ended - started),
                        "drain_s": round(ended - started, 2),
                        "share": share,
                    }
                await asyncio.sleep(0.1)
            raise RuntimeError(f"{ingesters} ingesters did not drain {n} in time")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


async def run_bench(n: int, sensors: int, batch_size: int, progress: Any = None) -> dict[str, Any]:
    """``batch_size`` sets each ingester's prefetch (batch x (writes in flight + 1)): with
    a backlog smaller than one ingester's prefetch, the first to connect takes it all."""
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-cluster-") as tmp:
        root = Path(tmp)
        settings = bench_settings(root, influx_db="ceiling", ingest_batch_size=batch_size)
        influxd = private_influxd(root, settings)
        cluster = RabbitCluster(root / "rabbitmq", 3)
        influxd.start()
        try:
            started = time.monotonic()
            cluster.start()
            if progress:
                progress(f"3-node cluster up in {time.monotonic() - started:.0f}s")
            cluster.declare_readings(
                settings.topic_prefix,
                settings.mqtt_ingest_user,
                settings.mqtt_ingest_password.get_secret_value(),
            )
            return await _measure(settings, cluster, n, sensors, progress)
        finally:
            cluster.stop()
            influxd.stop()


async def _measure(
    settings: Settings, cluster: RabbitCluster, n: int, sensors: int, progress: Any
) -> dict[str, Any]:
    fleet = default_fleet(sensors)
    types = {d.type for d in fleet}
    await register_fleet(settings, fleet)
    admin = cluster.amqp_urls(ADMIN_USER, cluster.layout.admin_password)
    nodes = ",".join(f"amqp://127.0.0.1:{node.ports.amqp}/" for node in cluster.nodes)
    window = prefetch(
        settings.ingest_batch_size,
        settings.ingest_receive_maximum,
        settings.ingest_writes_in_flight,
    )
    fill_s = await fill(admin[0], settings.topic_prefix, fleet, n)
    if progress:
        progress(f"queued {n} readings in {fill_s:.1f}s ({n / fill_s:.0f}/s)")
    drain_ceiling = await bare_drain(admin[1], n, window)
    async with InfluxClient(settings.influx_url, "ceiling", timeout_s=60) as influx:
        await influx.create_database()
        lines = [line_of(r) for r in make_readings(fleet, n)]
        influx_ceiling = await write_ceiling(influx, lines)
        if progress:
            progress(f"ceilings: drain {drain_ceiling:.0f}/s, InfluxDB {influx_ceiling:.0f}/s")
        curve = []
        lost = 0
        for count in (1, 2, 3):
            database = f"round{count}"
            await influx.create_database(database)
            await fill(admin[count % 3], settings.topic_prefix, fleet, n)
            point = await drain_with(settings, nodes, count, n, database)
            stored = await _count(settings, database, types)
            lost += n - stored
            lower = min(drain_ceiling, influx_ceiling)
            curve.append(
                {
                    **point,
                    "readings_per_s": round(point["readings_per_s"]),
                    "stored": stored,
                    "ratio_drain": round(point["readings_per_s"] / drain_ceiling, 3),
                    "ratio_influx": round(point["readings_per_s"] / influx_ceiling, 3),
                    "ratio": round(point["readings_per_s"] / lower, 3),
                }
            )
            if progress:
                progress(f"{count} ingester(s): {curve[-1]}")
    return {
        "bench": "cluster",
        "nodes": 3,
        "readings": n,
        "sensors": sensors,
        "batch_size": settings.ingest_batch_size,
        "prefetch": window,
        "fill_per_s": round(n / fill_s),
        "drain_ceiling_per_s": round(drain_ceiling),
        "influx_ceiling_per_s": round(influx_ceiling),
        "ratio": curve[0]["ratio"],
        "target": 0.5,
        "lost": lost,
        "curve": curve,
    }


async def _count(settings: Settings, database: str, types: set[str]) -> int:
    async with InfluxClient(settings.influx_url, database, timeout_s=60) as influx:
        return await count_stored(influx, types)
