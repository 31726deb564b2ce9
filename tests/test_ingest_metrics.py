"""The ingester's Prometheus endpoint and its platform figures in InfluxDB."""

from __future__ import annotations

import re

import httpx
import orjson
from support import running, wait_until

from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester
from wiring.services import free_port

AQ = DeviceInfo("AQ-1", "air_quality", "jingansi", 31.22, 121.45, "active")


async def test_metrics_count_received_stored_and_rejected_by_reason(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = settings.model_copy(
        update={"ingest_metrics_port": free_port(), "ingest_report_interval_s": 0.2}
    )
    await register_fleet(settings, [AQ])
    topic = f"{settings.topic_prefix}/AQ-1/readings".encode()
    stream = [(topic, orjson.dumps({"seq": i, "pm25": 5.0 + i})) for i in range(10)]
    stream += [(topic, b"garbage"), (topic, orjson.dumps({"pm25": -1.0}))]
    async with running(run_ingester, settings):
        blaster = BulkPublisher(
            settings.mqtt_host,
            settings.mqtt_port,
            "m",
            "simulator",
            settings.fleet_password(),
        )
        await blaster.publish_all(stream)
        url = f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"
        async with httpx.AsyncClient() as http:

            async def scraped() -> str:
                text = (await http.get(url)).text
                return text if "sensornet_ingest_received_readings_total 12.0" in text else ""

            text = await wait_until(scraped)
        assert "sensornet_ingest_stored_total 10.0" in text
        assert 'sensornet_ingest_rejected_total{reason="invalid_json"} 1.0' in text
        assert 'sensornet_ingest_rejected_total{reason="out_of_range"} 1.0' in text
        # latencies as histograms: every acked batch counted once, in cumulative buckets
        batches = re.search(r"^sensornet_ingest_batches_total (\S+)$", text, re.M)
        count = re.search(r"^sensornet_ingest_batch_seconds_count (\S+)$", text, re.M)
        inf = re.search(r'^sensornet_ingest_batch_seconds_bucket\{le="\+Inf"\} (\S+)$', text, re.M)
        assert batches and count and inf
        assert float(count.group(1)) == float(inf.group(1)) == float(batches.group(1)) >= 1
        assert "sensornet_ingest_lag_histogram_seconds_bucket" in text

        async def reported() -> list[dict[str, object]]:
            found = rows(await influx.query('SELECT last("stored") FROM "platform_ingest"'))
            return found if found and found[0]["last"] == 10 else []

        await wait_until(reported)
    by_reason = rows(
        await influx.query('SELECT last("count") FROM "platform_rejects" GROUP BY "reason"')
    )
    assert {r["reason"]: r["last"] for r in by_reason} == {"invalid_json": 1, "out_of_range": 1}
