"""Dead-letter and status lines InfluxDB refuses have nowhere left to go: they are counted
(``dropped_lines`` on /metrics and in ``platform_ingest``) and logged, never dropped
unseen. Here InfluxDB refuses them for a field type conflict an earlier write created."""

from __future__ import annotations

import time

import httpx
import orjson
from faultproxy import FaultProxy
from support import running, wait_until

from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester
from wiring.services import free_port

AQ = DeviceInfo("AQ-1", "air_quality", "jingansi", 31.22, 121.45, "active")


async def conflicting_types(influx: InfluxClient) -> None:
    """Integer ``detail`` and ``state``: from now on the ingester's strings conflict with
    them (InfluxDB keeps one type per field and shard; both sides of a shard boundary)."""
    now = time.time_ns()
    await influx.write(
        b"".join(
            b"dead_letter,device=AQ-1,reason=earlier detail=1i %d\n"
            b"device_status,sensor_id=AQ-1 state=1i %d\n" % (ts, ts)
            for ts in (now - 10**9, now + 60 * 10**9)
        )
    )


async def publish(settings: Settings, *messages: tuple[str, bytes]) -> None:
    p = settings.topic_prefix
    blaster = BulkPublisher(
        settings.mqtt_host,
        settings.mqtt_port,
        "dropped",
        "simulator",
        settings.fleet_password(),
    )
    await blaster.publish_all([(f"{p}/{topic}".encode(), payload) for topic, payload in messages])


async def scraped(settings: Settings, *wanted: str) -> str:
    url = f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"
    async with httpx.AsyncClient() as http:

        async def metrics() -> str:
            text = (await http.get(url)).text
            return text if all(w in text for w in wanted) else ""

        return await wait_until(metrics, timeout_s=60, interval_s=0.3)


def metric(measurement: str, count: int) -> str:
    return f'sensornet_ingest_dropped_lines_total{{measurement="{measurement}"}} {count}.0'


async def test_refused_dead_letter_and_status_lines_are_counted_and_reported(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = settings.model_copy(
        update={"ingest_metrics_port": free_port(), "ingest_report_interval_s": 0.2}
    )
    await register_fleet(settings, [AQ])
    await conflicting_types(influx)
    async with running(run_ingester, settings):
        await publish(
            settings,
            ("AQ-1/readings", orjson.dumps({"seq": 1, "pm25": -1.0})),  # a dead letter
            ("AQ-1/status", b"online"),
            ("AQ-1/readings", orjson.dumps({"seq": 2, "pm25": 5.0})),
        )
        text = await scraped(settings, metric("dead_letter", 1), metric("device_status", 1))
        assert 'sensornet_ingest_rejected_total{reason="out_of_range"} 1.0' in text

        async def reported() -> bool:
            found = rows(await influx.query('SELECT last("dropped_lines") FROM "platform_ingest"'))
            return bool(found) and found[0]["last"] == 2

        await wait_until(reported, timeout_s=30)
    stored = rows(await influx.query('SELECT "seq" FROM "air_quality"'))
    assert [r["seq"] for r in stored] == [2]  # the good reading beside them is stored


async def test_refused_dead_letters_replayed_from_the_spool_are_counted(
    settings: Settings, influx: InfluxClient
) -> None:
    await register_fleet(settings, [AQ])
    async with FaultProxy(settings.influx_url).serving() as proxy:
        via_proxy = settings.model_copy(
            update={
                "influx_url": f"http://127.0.0.1:{proxy.port}",
                "influx_timeout_s": 1.0,
                "ingest_metrics_port": free_port(),
            }
        )
        proxy.set_mode("error")  # InfluxDB answers 500: the batch goes to the spool
        async with running(run_ingester, via_proxy):
            await publish(settings, ("AQ-1/readings", orjson.dumps({"seq": 1, "pm25": -1.0})))
            await scraped(via_proxy, "sensornet_ingest_spooled_total 1.0")
            await conflicting_types(influx)
            proxy.set_mode("ok")  # replayed, and refused for the conflict
            await scraped(via_proxy, metric("dead_letter", 1), "sensornet_ingest_spool_bytes 0.0")
    letters = rows(await influx.query('SELECT * FROM "dead_letter" WHERE "reason" != \'earlier\''))
    assert letters == []  # and no letter of the refused letter was made
