"""``sensornet bench ingest --input lorawan``: LoRaWAN network-server envelopes over MQTT,
drained by the production ingester, against the InfluxDB write ceiling of the same run.

1. Start a Mosquitto standing in for the network server's broker (``wiring.lorawan``) and
   an InfluxDB; register a fleet with DevEUIs; create the ingester's persistent session
   there, then queue N uplinks (ChirpStack v4 or The Things Stack v3 JSON, one reading
   each, decoded by the "network server" or, with ``raw``, as the type's codec bytes).
2. Start ``sensornet ingest`` with only the ``lorawan`` input (a separate process,
   production settings) and time from its first message until all N are durable.
3. Write the same readings' points straight to InfluxDB in batches of 5000.

Each uplink also writes a ``device_health`` point (RSSI, SNR, fCnt...): the ratio counts
readings only, so that work is part of what it measures.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.ingest import _drain, _env, _metrics, line_of, start_ingester, write_ceiling
from bench.private import bench_settings, private_influxd
from bench.procfs import peak_rss_mb
from gateway_sim.lorawan import dev_eui_for, envelopes
from gateway_sim.synthetic import make_readings
from ingest.inputs.lorawan import UPLINK_FILTERS
from ingest.inputs.mqtt import MqttSource
from sensornet.accounting import count_stored
from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.lorawan import NS_PUBLISHER, network_server_broker
from wiring.parts import default_fleet, register_fleet
from wiring.services import free_port

Network = Literal["chirpstack", "tts"]


async def run_lorawan_bench(
    readings_n: int, sensors: int, network: Network, raw: bool, progress: Any = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-lorawan-") as tmp:
        root = Path(tmp)
        settings = bench_settings(
            root,
            ingest_inputs=["lorawan"],
            lorawan_network=network,
            lorawan_mqtt_port=free_port(),
            lorawan_mqtt_user="sensornet-lorawan",
            lorawan_mqtt_password=secrets.token_urlsafe(16),
            lorawan_mqtt_client_id="bench-lorawan",
        )
        publisher_password = secrets.token_urlsafe(16)
        broker = network_server_broker(
            root / "ns-mosquitto",
            settings.lorawan_mqtt_port,
            settings.lorawan_mqtt_user,
            settings.lorawan_mqtt_password.get_secret_value(),
            publisher_password,
            max_queued_messages=max(2_000_000, readings_n + 1),
        )
        influxd = private_influxd(root, settings)
        broker.start()
        influxd.start()
        try:
            return await _measure(
                settings, publisher_password, readings_n, sensors, network, raw, progress
            )
        finally:
            broker.stop()
            influxd.stop()


async def _spool_replayed(port: int, timeout_s: float = 120.0) -> int:
    """Readings that went through the spool (an InfluxDB write timed out under load): all
    acknowledged, so waited for until replayed, before the ingester is stopped and the
    store counted."""
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + timeout_s
        while True:
            m = await _metrics(client, port)
            if m.get("sensornet_ingest_spool_bytes", 0) == 0 or time.monotonic() > deadline:
                return int(m.get("sensornet_ingest_spooled_total", 0))
            await asyncio.sleep(0.2)


async def _all_stored(
    port: int, influx: InfluxClient, types: set[str], n: int, timeout_s: float = 300.0
) -> dict[str, Any]:
    """The drain's rate once all ``n`` readings are in InfluxDB: from the ingester's first
    message to its last acknowledged batch by then."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if await count_stored(influx, types) >= n:
                break
            await asyncio.sleep(0.5)
        m = await _metrics(client, port)
    elapsed = (
        m["sensornet_ingest_last_batch_timestamp_seconds"]
        - m["sensornet_ingest_first_message_timestamp_seconds"]
    )
    return {"readings_per_s": n / elapsed, "drain_s": round(elapsed, 2),
            "rejected": int(m.get("rejected", 0))}  # fmt: skip


async def _measure(
    settings: Settings,
    publisher_password: str,
    n: int,
    sensors: int,
    network: Network,
    raw: bool,
    progress: Any,
) -> dict[str, Any]:
    fleet = [replace(d, dev_eui=dev_eui_for(d.id)) for d in default_fleet(sensors)]
    types = {d.type for d in fleet}
    await register_fleet(settings, fleet)
    async with InfluxClient(settings.influx_url, settings.influx_db, timeout_s=60) as influx:
        await influx.create_database()
        await influx.create_database("ceiling")
        async with MqttSource(  # the ingester's persistent session exists before the queue
            host=settings.lorawan_mqtt_host,
            port=settings.lorawan_mqtt_port,
            client_id=settings.lorawan_mqtt_client_id,
            username=settings.lorawan_mqtt_user,
            password=settings.lorawan_mqtt_password.get_secret_value(),
            topic_filters=UPLINK_FILTERS[network],
            on_messages=lambda m, size: None,
            session_expiry_s=settings.ingest_session_expiry_s,
            receive_maximum=settings.ingest_receive_maximum,
        ):
            pass
        blaster = BulkPublisher(
            settings.lorawan_mqtt_host,
            settings.lorawan_mqtt_port,
            "bench-network-server",
            NS_PUBLISHER,
            publisher_password,
        )
        t = time.monotonic()
        sent = await blaster.publish_all(envelopes(network, make_readings(fleet, n), raw=raw))
        queue_s = time.monotonic() - t
        if progress:
            progress(
                f"queued {n} {network} uplinks ({'raw' if raw else 'decoded'}) in {queue_s:.1f}s"
            )
        env = {
            **os.environ,
            **_env(settings),
            "SENSORNET_INGEST_INPUTS": "lorawan",
            "SENSORNET_LORAWAN_NETWORK": network,
            "SENSORNET_LORAWAN_MQTT_PORT": str(settings.lorawan_mqtt_port),
            "SENSORNET_LORAWAN_MQTT_USER": settings.lorawan_mqtt_user,
            "SENSORNET_LORAWAN_MQTT_PASSWORD": settings.lorawan_mqtt_password.get_secret_value(),
            "SENSORNET_LORAWAN_MQTT_CLIENT_ID": settings.lorawan_mqtt_client_id,
        }
        proc = start_ingester(env, settings.state_dir / "ingester.log")
        try:
            await _drain(settings, proc, n, False, None, progress)  # type: ignore[arg-type]
            # Received readings can run ahead of the store: a message the broker delivers
            # again (see messages_received) is counted twice. So: until all n are stored.
            result = await _all_stored(settings.ingest_metrics_port, influx, types, n)
            rss = peak_rss_mb(proc.pid)
            spooled = await _spool_replayed(settings.ingest_metrics_port)
            async with httpx.AsyncClient() as client:
                final = await _metrics(client, settings.ingest_metrics_port)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        stored = await count_stored(influx, types)
        lines = [line_of(r) for r in make_readings(fleet, n)]
        ceiling = await write_ceiling(influx, lines, "ceiling")
    rate = result["readings_per_s"]
    return {
        "bench": "ingest",
        "input": "lorawan",
        "network": network,
        "payload": "raw" if raw else "decoded",
        "readings_sent": n,
        "messages_sent": sent,
        "sensors": sensors,
        "readings_stored": stored,
        "lost": n - stored,
        "readings_per_s": round(rate),
        "ceiling_points_per_s": round(ceiling),
        "ratio": round(rate / ceiling, 3),
        "target_ratio": 0.4,
        "peak_rss_mb": round(rss, 1),
        "queue_s": round(queue_s, 2),
        "spooled": spooled,
        "messages_received": int(final.get("sensornet_ingest_received_messages_total", 0)),
        **{k: v for k, v in result.items() if k != "readings_per_s"},
    }
