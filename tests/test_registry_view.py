"""The field-engineer view over the real API, InfluxDB, broker and ingester: a new
sensor reports with its own credentials and the one call shows all of it."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from pg_server import BACKENDS, registry_on
from support import mqtt_client, running, wait_until

from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.parts import run_api, run_ingester


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


async def test_one_call_shows_registry_credentials_liveness_readings_rejects(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    engineer = {"Authorization": f"Bearer {api_keys['engineer']}"}
    viewer = {"Authorization": f"Bearer {api_keys['viewer']}"}
    new = {
        "id": "NS-V1",
        "type": "noise",
        "subdistrict": "beizhan",
        "lat": 31.247,
        "lon": 121.475,
        "status": "active",
        "address": "North square",
    }
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        registered = (await http.post("/sensors", json=new, headers=engineer)).json()
        before = (await http.get("/sensors/NS-V1/view", headers=viewer)).json()
        assert before["liveness"] == "never"
        assert before["last_seen"] is None
        assert before["credentials"] == {
            "issued": True,
            "issued_at": before["credentials"]["issued_at"],
            "broker_access": True,
        }
        async with running(run_ingester, settings):
            password = registered["mqtt_password"]
            async with mqtt_client("NS-V1", settings.mqtt_port, "NS-V1", password) as device:
                now_ms = int(time.time() * 1000)
                topic = f"{settings.topic_prefix}/NS-V1/readings"
                device.publish(topic, orjson.dumps({"ts": now_ms - 2000, "laeq": 51.5}))
                device.publish(topic, orjson.dumps({"ts": now_ms - 1000, "laeq": 52.5}))
                future = now_ms + 86_400_000
                device.publish(topic, orjson.dumps({"ts": future, "laeq": 1.0}))

                async def seen() -> dict[str, object] | None:
                    r = await http.get("/sensors/NS-V1/view", headers=viewer)
                    body = r.json()
                    ready = len(body["last_readings"]) == 2 and body["rejects"]
                    return body if ready else None

                view = await wait_until(seen)
        assert view["sensor"]["address"] == "North square"
        assert view["liveness"] == "online"
        assert [r["values"]["laeq"] for r in view["last_readings"]] == [52.5, 51.5]
        assert view["last_seen"] == view["last_readings"][0]["time"]
        assert view["rejects"] == {"ts_future": 1}
        assert "mqtt_password" not in str(view)
        assert (await http.get("/sensors/nope/view", headers=viewer)).status_code == 404
