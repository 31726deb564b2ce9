"""Gateways over the real API, broker and ingester: a gateway gets its own credentials,
publishes packs on its own pack topic, and only its attached sensors' readings are kept."""

from __future__ import annotations

from typing import Any

import gmqtt
import httpx
import orjson
import pytest
from pg_server import BACKENDS, registry_on
from support import mqtt_client, running, wait_until

from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from wiring.parts import run_api, run_ingester


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


def noise(sensor_id: str, gateway: str) -> dict[str, Any]:
    return {
        "id": sensor_id,
        "type": "noise",
        "subdistrict": "beizhan",
        "lat": 31.247,
        "lon": 121.475,
        "status": "active",
        "gateway_id": gateway,
    }


async def test_gateway_publishes_packs_only_for_its_sensors(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    p = settings.topic_prefix
    gw = {"id": "GW-1", "subdistrict": "beizhan", "lat": 31.247, "lon": 121.475}
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=headers) as http,
    ):
        gateway = (await http.post("/gateways", json=gw)).json()
        assert gateway["mqtt_username"] == "GW-1"
        assert (await http.post("/gateways", json=gw)).status_code == 409
        for spec in (noise("NS-G1", "GW-1"), noise("NS-G2", "GW-2")):
            assert (await http.post("/sensors", json=spec)).status_code == 201
        listed = (await http.get("/gateways/GW-1")).json()
        assert (listed["sensors"], listed["has_credentials"]) == (["NS-G1"], True)

        async with running(run_ingester, settings):
            password = gateway["mqtt_password"]
            async with mqtt_client("GW-1", settings.mqtt_port, "GW-1", password) as client:
                # a sensor's own topic is not the gateway's: the broker drops it
                client.publish(f"{p}/NS-G1/readings", b'{"laeq": 99.0}')
                pack = {
                    "gw": "GW-1",
                    "readings": [
                        {"sensor": "NS-G1", "laeq": 50.5},
                        {"sensor": "NS-G2", "laeq": 60.5},
                    ],
                }
                client.publish(f"{p}/GW-1/pack", orjson.dumps(pack))
                client.publish(f"{p}/GW-1/status", b"online")  # a gateway's own status

                async def letters() -> list[dict[str, Any]]:
                    return rows(await influx.query('SELECT * FROM "dead_letter"'))

                refused = await wait_until(letters)
        stored = rows(await influx.query('SELECT * FROM "noise"'))
        assert [(r["sensor_id"], r["laeq"]) for r in stored] == [("NS-G1", 50.5)]
        # booked under the gateway that sent it, never into NS-G2's own account
        assert [(r["device"], r["reason"], r["device_raw"]) for r in refused] == [
            ("GW-1", "foreign_gateway", "NS-G2")
        ]
        said = rows(await influx.query('SELECT * FROM "device_status"'))
        assert [(r["sensor_id"], r["state"]) for r in said] == [("GW-1", "online")]

        retired = await http.post("/gateways/GW-1/retire")
        assert retired.json()["status"] == "retired"

        async def gateway_refused() -> bool:
            try:
                async with mqtt_client("GW-1b", settings.mqtt_port, "GW-1", password):
                    return False
            except gmqtt.mqtt.handler.MQTTConnectError:
                return True

        assert await wait_until(gateway_refused)
