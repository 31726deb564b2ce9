"""Per-device MQTT credentials on the real broker, issued through the real API: a device
may write only its own topics, revoked/rotated/retired credentials stop working at once
(same broker process), and nobody connects anonymously."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import gmqtt
import httpx
import pytest
from pg_server import BACKENDS, registry_on
from support import TestClient, mqtt_client, running, sensor_spec, wait_until

from sensornet.broker_auth import mosquitto_hash, verify
from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from wiring.parts import run_api, run_ingester
from wiring.services import Mosquitto


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


def connect(
    settings: Settings, user: str | None, password: str | None
) -> contextlib.AbstractAsyncContextManager[TestClient]:
    return mqtt_client(f"t-{user}-{id(password)}", settings.mqtt_port, user, password)


async def refused(settings: Settings, user: str | None, password: str | None) -> bool:
    try:
        async with connect(settings, user, password):
            return False
    except gmqtt.mqtt.handler.MQTTConnectError:
        return True


def test_hash_is_mosquittos_format() -> None:
    encoded = mosquitto_hash("s3cret")
    assert encoded.startswith("$7$101$")
    assert verify("s3cret", encoded)
    assert not verify("s3cret!", encoded)


async def test_device_writes_only_its_own_topics_and_revocation_works(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str], broker: Mosquitto
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    p = settings.topic_prefix
    pid = broker.pid()
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=headers) as http,
    ):
        a = (await http.post("/sensors", json=sensor_spec("NS-A"))).json()
        b = (await http.post("/sensors", json=sensor_spec("NS-B"))).json()
        await check_device_path(settings, influx, http, a, b, p)
    assert broker.pid() == pid  # never restarted


async def check_device_path(
    settings: Settings,
    influx: InfluxClient,
    http: httpx.AsyncClient,
    a: dict[str, Any],
    b: dict[str, Any],
    p: str,
) -> None:
    # the ingester starts after registration, so its registry cache knows both sensors
    async with running(run_ingester, settings):
        assert a["has_credentials"] and len(a["mqtt_password"]) >= 32
        assert (await http.get("/sensors/NS-A")).json()["has_credentials"] is True
        assert "mqtt_password" not in (await http.get("/sensors/NS-A")).json()

        assert await refused(settings, None, None)
        assert await refused(settings, "NS-A", b["mqtt_password"])

        # A listener with the ingester's rights sees what the broker lets through, in the
        # order NS-A sent it: once the own reading is there, the foreign one never will be.
        heard: list[str] = []
        listening = asyncio.Event()
        ingest_password = settings.mqtt_ingest_password.get_secret_value()
        async with (
            mqtt_client("acl-listener", settings.mqtt_port, "ingester", ingest_password) as ear,
            connect(settings, "NS-A", a["mqtt_password"]) as device,
        ):

            def on_message(client: object, topic: str, payload: bytes, *rest: object) -> int:
                heard.append(topic)
                return 0

            ear.client.on_message = on_message
            ear.client.on_subscribe = lambda *args: listening.set()
            ear.client.subscribe(f"{p}/+/readings", qos=1)
            await asyncio.wait_for(listening.wait(), 30)
            device.publish(f"{p}/NS-B/readings", b'{"laeq": 99.0}')  # B's topic: refused
            device.publish(f"{p}/NS-A/readings", b'{"laeq": 55.0}')

            async def own_heard() -> bool:
                return f"{p}/NS-A/readings" in heard

            await wait_until(own_heard)
            assert heard == [f"{p}/NS-A/readings"]

        async def stored() -> list[dict[str, Any]]:
            return rows(await influx.query('SELECT * FROM "noise"'))

        found = await wait_until(stored)
        assert [(r["sensor_id"], r["laeq"]) for r in found] == [("NS-A", 55.0)]
        assert rows(await influx.query('SELECT * FROM "dead_letter"')) == []

        rotated = (await http.post("/sensors/NS-A/credentials")).json()
        assert await wait_until(lambda: refused(settings, "NS-A", a["mqtt_password"]))
        assert not await refused(settings, "NS-A", rotated["mqtt_password"])

        async with connect(settings, "NS-A", rotated["mqtt_password"]) as connected:
            assert (await http.delete("/sensors/NS-A/credentials")).status_code == 200

            async def kicked() -> bool:  # the reload also cuts the live connection
                return not connected.client.is_connected

            assert await wait_until(kicked)
        assert await wait_until(lambda: refused(settings, "NS-A", rotated["mqtt_password"]))
        assert (await http.get("/sensors/NS-A")).json()["has_credentials"] is False

        assert not await refused(settings, "NS-B", b["mqtt_password"])
        assert (await http.post("/sensors/NS-B/retire")).is_success
        assert await wait_until(lambda: refused(settings, "NS-B", b["mqtt_password"]))

        history = (await http.get("/sensors/NS-A/history")).json()
        assert [h["action"] for h in reversed(history)] == [
            "register",
            "issue_credentials",
            "rotate_credentials",
            "revoke_credentials",
        ]
        assert a["mqtt_password"] not in str(history)


@pytest.mark.parametrize("user", ["ingester"])
async def test_service_identities_survive_registry_sync(
    settings: Settings, api_keys: dict[str, str], user: str
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        assert (await h.post("/sensors", json=sensor_spec("NS-C"))).status_code == 201
    password = settings.mqtt_ingest_password.get_secret_value()
    assert not await refused(settings, user, password)
