"""Simulated sensors publish, the ingester stores, the API returns exactly what was sent."""

from __future__ import annotations

import asyncio

import httpx
from support import running, wait_until

from gateway_sim.publisher import LivePublisher
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_api, run_ingester


async def test_published_readings_come_back_through_the_api(
    settings: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> None:
    catalogue = load_catalogue()
    fleet = default_fleet(len(catalogue.types))  # one sensor of every type
    await register_fleet(settings, fleet)
    publisher = LivePublisher(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=settings.fleet_password(),
        topic_prefix=settings.topic_prefix,
        fleet=fleet,
        catalogue=catalogue,
        first_report_within_s=0.5,
        keep_log=True,
        interval_scale=0.3 / max(t.interval_s for t in catalogue.types.values()),
    )
    async with running(run_ingester, settings), running(run_api, settings):
        await publisher.run(asyncio.Event(), max_rounds=3)
        sent = publisher.stats.log
        assert len(sent) == 3 * len(fleet)
        base = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base, headers=viewer_headers) as http:

            async def all_stored() -> bool:
                for device in fleet:
                    r = await http.get(
                        f"/sensors/{device.id}/readings", params={"start": "2020-01-01T00:00:00Z"}
                    )
                    if r.status_code != 200 or len(r.json()["readings"]) < 3:
                        return False
                return True

            await wait_until(all_stored, timeout_s=30)
            for device in fleet:
                body = (
                    await http.get(
                        f"/sensors/{device.id}/readings", params={"start": "2020-01-01T00:00:00Z"}
                    )
                ).json()
                mine = sorted((s for s in sent if s.sensor_id == device.id), key=lambda s: s.ts_ms)
                assert body["type"] == device.type
                assert body["subdistrict"] == device.subdistrict
                assert len(body["readings"]) == len(mine)
                for got, want in zip(body["readings"], mine, strict=True):
                    assert got["values"].keys() == want.values.keys()
                    for quantity, value in want.values.items():
                        assert got["values"][quantity]["value"] == value
                        unit = catalogue.get(device.type).quantities[quantity].unit
                        assert got["values"][quantity]["unit"] == unit
                latest = (await http.get(f"/sensors/{device.id}/latest")).json()
                assert latest["readings"][0]["time"] == body["readings"][-1]["time"]
            health = (await http.get("/health")).json()
            assert health == {
                "status": "ok",
                "broker": True,
                "influxdb": True,
                "registry": True,
                "down": [],
            }
