"""Bounded memory under load: with InfluxDB slow and a backlog of gateway packs waiting
in the broker, the ingester stops reading its socket rather than hold more than about two
batches of payload (measured by the ingester's own gauge), and still stores everything."""

from __future__ import annotations

from dataclasses import replace

import httpx
from support import running
from test_faults import all_stored, create_session, publish, slow_influx

from ingest.bench import BENCH_GATEWAY
from sensornet.influx import InfluxClient
from sensornet.runtime import default_fleet, register_fleet, run_ingester
from sensornet.services import free_port
from sensornet.settings import Settings

BATCH_BYTES = 32 * 1024
# Once paused, what is already read from the socket still arrives: asyncio's StreamReader
# holds up to twice its 64 KiB limit plus one socket read (256 KiB) before it stops.
IN_THE_PIPE = 2 * 64 * 1024 + 256 * 1024


async def test_pending_payload_stays_bounded_while_influx_is_slow(
    settings: Settings, influx: InfluxClient
) -> None:
    fleet = [replace(d, gateway_id=BENCH_GATEWAY) for d in default_fleet(50)]
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
