"""Bounded memory under load: with InfluxDB slow and a backlog of gateway packs waiting
in the broker, the ingester stops reading its socket rather than hold more than about two
batches of payload (measured by the ingester's own gauge), and still stores everything;
and when it stops, it drains all it holds."""

from __future__ import annotations

from dataclasses import replace

import httpx
from support import running, wait_until
from test_faults import all_stored, create_session, publish, slow_influx

from gateway_sim.synthetic import SYNTHETIC_GATEWAY
from sensornet.accounting import count_stored
from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_ingester
from wiring.services import free_port

BATCH_BYTES = 32 * 1024
# Past the threshold: the 64 KiB read that crossed it (plus a pack split across reads), and
# what asyncio's StreamReader already holds: up to twice its 64 KiB limit plus one socket
# read (256 KiB) before it stops reading.
IN_THE_PIPE = 64 * 1024 + 20 * 1024 + 2 * 64 * 1024 + 256 * 1024


async def test_pending_payload_stays_bounded_while_influx_is_slow(
    settings: Settings, influx: InfluxClient
) -> None:
    fleet = [replace(d, gateway_id=SYNTHETIC_GATEWAY) for d in default_fleet(50)]
    port = free_port()
    async with slow_influx(settings, ingest_batch_bytes=BATCH_BYTES, ingest_metrics_port=port) as (
        _,
        slow,
    ):
        await register_fleet(slow, fleet)
        await create_session(slow)
        await publish(slow, fleet, 20_000, pack=100)  # 200 packs, ~2 MB queued in the broker
        async with running(run_ingester, slow):
            await all_stored(influx, fleet, 20_000)
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    peak = next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("sensornet_ingest_pending_bytes_peak ")
    )
    backlog = 20_000 * 100  # bytes, about 100 per reading
    assert BATCH_BYTES < peak <= 2 * BATCH_BYTES + IN_THE_PIPE < backlog / 3


async def test_stopping_drains_everything_received(
    settings: Settings, influx: InfluxClient
) -> None:
    """On stop (SIGTERM in production) the ingester reads no more, then writes and acks all
    it has received, not just one batch: its last report shows nothing pending, and every
    reading it received is stored."""
    fleet = [replace(d, gateway_id=SYNTHETIC_GATEWAY) for d in default_fleet(50)]
    async with slow_influx(
        settings, ingest_batch_bytes=BATCH_BYTES, ingest_report_interval_s=0.2
    ) as (proxy, slow):
        proxy.delay_s = 0.2  # so the stop lands with most of the backlog still queued
        await register_fleet(slow, fleet)
        await create_session(slow)
        await publish(slow, fleet, 50_000, pack=100)
        async with running(run_ingester, slow):
            await wait_until(lambda: _pending_seen(influx), timeout_s=60)
    last = rows(await influx.query('SELECT * FROM "platform_ingest" ORDER BY time DESC LIMIT 1'))[0]
    stored = await count_stored(influx, {d.type for d in fleet})
    assert last["pending_bytes"] == 0
    assert 0 < last["received_readings"] == last["stored"] == stored < 50_000


async def _pending_seen(influx: InfluxClient) -> bool:
    """A report showed payload waiting: the stop will find some to drain."""
    answer = await influx.query('SELECT max("pending_bytes") FROM "platform_ingest"')
    found = rows(answer)
    return bool(found) and (found[0].get("max") or 0) > BATCH_BYTES
