"""``sensornet bench ingest``: how fast the production ingester drains a queued session,
against the InfluxDB write ceiling measured in the same run on the same points.

1. Start a private broker and InfluxDB; register a fleet; create the ingester's persistent
   session, then queue N QoS 1 messages for it while it is away.
2. Start ``sensornet ingest`` (a separate process, production settings: ack after write,
   validation on) and time from its first message until all N are durable.
3. Write the same points straight to InfluxDB in batches of 5000 over one connection.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.private import bench_settings, private_influxd
from bench.procfs import peak_rss_mb
from gateway_sim.synthetic import SYNTHETIC_GATEWAY, Reading, make_readings, messages
from ingest.inputs.mqtt import MqttSource
from sensornet.accounting import count_stored
from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet
from wiring.services import InfluxDB, Mosquitto, broker_acl

CEILING_BATCH = 5000


def start_ingester(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``sensornet ingest`` in its own process (its pid gives the RSS figure), logging to
    ``log_path``. ``SENSORNET_BENCH_PYTHON_ARGS``, e.g. "-m cProfile -o prof.out",
    profiles it under load."""
    python_args = os.environ.get("SENSORNET_BENCH_PYTHON_ARGS", "").split()
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, *python_args, "-m", "cli.main", "ingest"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def write_ceiling(
    influx: InfluxClient, lines: list[str], database: str | None = None
) -> float:
    """InfluxDB's write ceiling: ``lines`` straight to it, ``CEILING_BATCH`` a write, one
    connection; points per second. Every ingest bench compares against this."""
    t = time.monotonic()
    for i in range(0, len(lines), CEILING_BATCH):
        await influx.write(encode_lines(lines[i : i + CEILING_BATCH]), database=database)
    return len(lines) / (time.monotonic() - t)


def line_of(r: Reading) -> str:
    return encode_point(
        r.device.type,
        {"sensor_id": r.device.id, "subdistrict": r.device.subdistrict},
        {**r.values, "seq": r.seq},
        r.ts_ms * 1_000_000,
    )


async def _metrics(client: httpx.AsyncClient, port: int) -> dict[str, float]:
    try:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0)).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("sensornet_ingest_") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
        elif line.startswith("sensornet_ingest_rejected_total{"):
            out["rejected"] = out.get("rejected", 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def run_bench(
    readings_n: int, pack: int, sensors: int, outage: bool, progress: Any = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-") as tmp:
        root = Path(tmp)
        # the bench's private broker: its publisher uses the (test-only) fleet identity
        settings = bench_settings(root, mqtt_fleet_password=secrets.token_urlsafe(16))
        broker = Mosquitto(
            name="mosquitto",
            home=root / "mosquitto",
            port=settings.mqtt_port,
            users={
                settings.mqtt_ingest_user: settings.mqtt_ingest_password.get_secret_value(),
                settings.mqtt_fleet_user: settings.fleet_password(),
            },
            acl=broker_acl(
                settings.topic_prefix, settings.mqtt_ingest_user, settings.mqtt_fleet_user
            ),
            max_queued_messages=max(2_000_000, readings_n + 1),
        )
        influxd = private_influxd(root, settings)
        broker.start()
        influxd.start()
        try:
            return await _measure(
                settings, broker, influxd, readings_n, pack, sensors, outage, progress
            )
        finally:
            broker.stop()
            influxd.stop()


async def _measure(
    settings: Settings,
    broker: Mosquitto,
    influxd: InfluxDB,
    n: int,
    pack: int,
    sensors: int,
    outage: bool,
    progress: Any,
) -> dict[str, Any]:
    fleet = default_fleet(sensors)
    if pack > 1:  # packs are accepted only for the sensors attached to their gateway
        fleet = [replace(d, gateway_id=SYNTHETIC_GATEWAY) for d in fleet]
    types = {d.type for d in fleet}
    await register_fleet(settings, fleet)
    async with InfluxClient(settings.influx_url, settings.influx_db, timeout_s=60) as influx:
        await influx.create_database()
        await influx.create_database("ceiling")
        # 1. the ingester's persistent session exists before anything is queued for it
        from sensornet.topics import ingest_filters

        async with MqttSource(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            client_id=settings.ingest_client_id,
            username=settings.mqtt_ingest_user,
            password=settings.mqtt_ingest_password.get_secret_value(),
            topic_filters=ingest_filters(settings.topic_prefix, settings.ingest_share_group),
            on_messages=lambda m, size: None,
            session_expiry_s=settings.ingest_session_expiry_s,
            receive_maximum=settings.ingest_receive_maximum,
        ):
            pass
        blaster = BulkPublisher(
            settings.mqtt_host,
            settings.mqtt_port,
            "bench-publisher",
            settings.mqtt_fleet_user,
            settings.fleet_password(),
        )
        t = time.monotonic()
        sent_msgs = await blaster.publish_all(
            messages(settings.topic_prefix, make_readings(fleet, n), pack)
        )
        queue_s = time.monotonic() - t
        if progress:
            progress(f"queued {n} readings in {sent_msgs} messages in {queue_s:.1f}s")
        if outage:
            influxd.stop()
        # 2. the drain, by the production ingester in its own process
        env = {**os.environ, **_env(settings)}
        proc = start_ingester(env, settings.state_dir / "ingester.log")
        try:
            result = await _drain(settings, proc, n, outage, influxd, progress)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        stored = await count_stored(influx, types)
        # 3. the ceiling: the same points, straight to InfluxDB, 5000 a batch, one connection
        lines = [line_of(r) for r in make_readings(fleet, n)]
        ceiling = await write_ceiling(influx, lines, "ceiling")
    rate = result["readings_per_s"]
    return {
        "bench": "ingest",
        "readings_sent": n,
        "messages_sent": sent_msgs,
        "pack": pack,
        "sensors": sensors,
        "outage": outage,
        "readings_stored": stored,
        "lost": n - stored,
        "readings_per_s": round(rate),
        "ceiling_points_per_s": round(ceiling),
        "ratio": round(rate / ceiling, 3),
        "peak_rss_mb": round(rss, 1),
        "queue_s": round(queue_s, 2),
        **{k: v for k, v in result.items() if k != "readings_per_s"},
    }


def _env(settings: Settings) -> dict[str, str]:
    return {
        "SENSORNET_STATE_DIR": str(settings.state_dir),
        "SENSORNET_MQTT_PORT": str(settings.mqtt_port),
        "SENSORNET_INFLUX_URL": settings.influx_url,
        "SENSORNET_INFLUX_DB": settings.influx_db,
        "SENSORNET_INGEST_CLIENT_ID": settings.ingest_client_id,
        "SENSORNET_INGEST_METRICS_PORT": str(settings.ingest_metrics_port),
        "SENSORNET_REGISTRY_URL": settings.registry_database_url,
    }


async def _drain(
    settings: Settings,
    proc: subprocess.Popen[bytes],
    n: int,
    outage: bool,
    influxd: InfluxDB,
    progress: Any,
) -> dict[str, Any]:
    # One keep-alive client: a new one per poll cost the bench 13 % of a core, taken from
    # the processes it measures.
    async with httpx.AsyncClient() as client:
        port = settings.ingest_metrics_port
        deadline = time.monotonic() + max(120.0, n / 2000)
        started: float | None = None
        spooled_at: float | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = (settings.state_dir / "ingester.log").read_text(errors="replace")
                raise RuntimeError(f"ingester exited: {log[-2000:]}")
            m = await _metrics(client, port)
            done = m.get("sensornet_ingest_received_readings_total", 0.0)
            if started is None and done > 0:
                started = m.get("sensornet_ingest_first_message_timestamp_seconds") or time.time()
            if outage and spooled_at is None and m.get("sensornet_ingest_spooled_total", 0) >= n:
                spooled_at = time.time()
                if progress:
                    progress(f"all {n} readings spooled with InfluxDB down; restarting InfluxDB")
                influxd.start()
            finished = (m.get("sensornet_ingest_replayed_total", 0) >= n) if outage else done >= n
            if finished and started is not None:
                # live drains end at the ingester's last ack, not at this poll (0.1 s later)
                ended = (
                    time.time() if outage else m["sensornet_ingest_last_batch_timestamp_seconds"]
                )
                elapsed = ended - started
                return {
                    "readings_per_s": n / elapsed,
                    "drain_s": round(elapsed, 2),
                    "rejected": int(m.get("rejected", 0)),
                }
            await asyncio.sleep(0.1)
        log = (settings.state_dir / "ingester.log").read_text(errors="replace")
        figures = await _metrics(client, port)
        raise RuntimeError(f"ingester did not finish in time; metrics {figures}; log {log[-2000:]}")
