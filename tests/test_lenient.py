"""Lenient where it loses nothing, on a real ingester (MQTT and HTTP inputs), InfluxDB and
API: keys the catalogue does not know no longer cost the reading (the known quantities are
stored, each unknown key counted per device: accounting API, platform health, Prometheus);
a UTF-8 BOM is tolerated; payloads that are not JSON are named for what they are."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime

import cbor2
import httpx
from support import mqtt_client, running, wait_until

from sensornet.influx import InfluxClient
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings
from wiring.parts import run_api, run_ingester
from wiring.services import free_port

SENSOR = DeviceInfo("AQ-L1", "air_quality", "jingansi", 31.22, 121.45, "active")


async def test_unknown_keys_are_counted_not_fatal_and_bad_encodings_named(
    settings: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> None:
    settings = settings.model_copy(
        update={"ingest_metrics_port": free_port(), "ingest_report_interval_s": 0.2}
    )
    async with open_registry(settings.registry_database_url) as registry:
        await upsert_devices(registry, [SENSOR])
    now = int(time.time())
    topic = f"{settings.topic_prefix}/{SENSOR.id}/readings"
    payloads = [
        b'{"ts": %d, "seq": 1, "pm25": 12.5, "fw": "1.4.2", "rssi": -71}' % now,
        b'\xef\xbb\xbf{"ts": %d, "seq": 2, "pm25": 13.5, "rssi": -70}' % (now + 1),
        b'{"ts": %d, "seq": 3, "fw": "1.4.2"}' % (now + 2),  # nothing known: refused
        gzip.compress(b'{"pm25": 1.0}'),
        '{"pm25": 1.0}'.encode("utf-16"),
        cbor2.dumps({"pm25": 1.0}),
        b"[" * 3000 + b"]" * 3000,
    ]
    async with (
        running(run_ingester, settings),
        running(run_api, settings),
        mqtt_client(
            "lenient-test", settings.mqtt_port, "simulator", settings.fleet_password()
        ) as mqtt,
    ):
        for payload in payloads:
            mqtt.publish(topic, payload)
        await mqtt.acked()

        async def stored() -> list[list[object]]:
            series = await influx.query('SELECT "pm25", "seq" FROM "air_quality"')
            return series[0]["values"] if series else []

        async def letters() -> dict[str, int]:
            series = await influx.query(
                'SELECT count("payload_bytes") FROM "dead_letter" GROUP BY "reason"'
            )
            return {s["tags"]["reason"]: int(s["values"][0][1]) for s in series}

        async def all_in() -> bool:
            return len(await stored()) == 2 and sum((await letters()).values()) == 5

        await wait_until(all_in, timeout_s=30)
        assert [row[1:] for row in await stored()] == [[12.5, 1], [13.5, 2]]
        assert await letters() == {
            "unknown_quantity": 1,
            "gzip": 1,
            "utf16": 1,
            "cbor": 1,
            "too_deep": 1,
        }
        base = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base, headers=viewer_headers) as api:
            # a window that holds the second reading, stamped a second ahead of now
            window = {
                "start": datetime.fromtimestamp(now - 60, UTC).isoformat(),
                "end": datetime.fromtimestamp(now + 60, UTC).isoformat(),
            }
            account = (await api.get(f"/devices/{SENSOR.id}/accounting", params=window)).json()
            assert account["unknown_keys"] == {"fw": 1, "rssi": 2}
            assert account["stored"] == 2 and account["rejected"] == 5

            async def reported() -> bool:
                health = (await api.get("/platform/health")).json()
                return health["unknown_keys_by_key"] == {"fw": 1, "rssi": 2}

            await wait_until(reported, timeout_s=30)
            metrics = (
                await api.get(f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics")
            ).text
        assert 'sensornet_ingest_unknown_keys_total{key="rssi"} 2.0' in metrics
        assert 'sensornet_ingest_rejected_total{reason="gzip"} 1.0' in metrics
