"""Service identities cannot publish as devices, and no device can take their names
(issue 23). On a real Mosquitto with the generated ACL: every service identity (the
ingester, the simulator's fleet identity, the delivery canary) publishing to its own
``%u`` topics, or to another service's, reaches nobody, while a device's reading does;
the registry refuses reserved ids through the API (422 problem+json), the CLI and the
bulk import, on a real API process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from conftest import FLEET_PASSWORD, INGEST_PASSWORD
from support import mqtt_client, running, sensor_spec, wait_until
from typer.testing import CliRunner

from cli.main import app
from gateway_sim.synthetic import make_readings, messages
from sensornet import broker_files
from sensornet.broker_auth import mosquitto_hash
from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from sensornet.topics import TOPIC_KINDS
from wiring.parts import default_fleet, register_fleet, run_api, run_ingester
from wiring.services import Mosquitto, broker_acl, free_port

PREFIX = "city/v1"
CANARY_PASSWORD = "canary-test-pw"


@pytest.fixture
def open_broker(tmp_path: Path) -> Mosquitto:
    """The shipped ACL plus a device and an observer that may read everything below the
    prefix (test-only: it sees whatever the broker lets through)."""
    service = Mosquitto(
        name="mosquitto",
        home=tmp_path / "acl-broker",
        port=free_port(),
        users={
            "ingester": INGEST_PASSWORD,
            "simulator": FLEET_PASSWORD,
            "NS-DEV": "device-pw",
            "observer": "observer-pw",
        },
        acl=broker_acl(PREFIX, "ingester", "simulator")
        + f"\nuser observer\ntopic read {PREFIX}/#\n",
    )
    service.start()
    # the delivery canary, with a password this test knows (broker_files.deliver's way)
    broker_files.assemble(service.home, mosquitto_hash(CANARY_PASSWORD, iterations=1))
    broker_files.signal_reload(service.home)
    return service


async def test_no_service_identity_can_publish_to_device_topics(open_broker: Mosquitto) -> None:
    port = open_broker.port
    heard: list[str] = []
    subscribed = asyncio.Event()
    identities = {
        "ingester": INGEST_PASSWORD,
        "simulator": FLEET_PASSWORD,
        broker_files.CANARY_USER: CANARY_PASSWORD,
    }
    try:
        async with mqtt_client("observer", port, "observer", "observer-pw") as ear:

            def on_message(client: object, topic: str, *rest: object) -> int:
                heard.append(topic)
                return 0

            ear.client.on_message = on_message
            ear.client.on_subscribe = lambda *args: subscribed.set()
            ear.client.subscribe(f"{PREFIX}/#", qos=1)
            await asyncio.wait_for(subscribed.wait(), 10)
            async with mqtt_client("dev", port, "NS-DEV", "device-pw") as device:
                device.publish(f"{PREFIX}/NS-DEV/readings", b'{"laeq": 50}')
                await wait_until(lambda: _has(heard, f"{PREFIX}/NS-DEV/readings"))
            for user, password in identities.items():
                async with mqtt_client(f"svc-{user}", port, user, password) as svc:
                    # its own %u topics; the fleet identity also every other service's
                    for name in {user, *(identities if user == "simulator" else ())}:
                        for kind in TOPIC_KINDS:
                            svc.publish(f"{PREFIX}/{name}/{kind}", b'{"pm25": 777}')
                    await svc.acked()  # MQTT 3.1.1: a refused publish is acked, then dropped
            # the fleet identity still writes as a device (what the load tests need)
            async with mqtt_client("fleet", port, "simulator", FLEET_PASSWORD) as fleet:
                fleet.publish(f"{PREFIX}/NS-DEV/status", b"online")
                await wait_until(lambda: _has(heard, f"{PREFIX}/NS-DEV/status"))
    finally:
        open_broker.stop()
    assert heard == [f"{PREFIX}/NS-DEV/readings", f"{PREFIX}/NS-DEV/status"]


async def _has(heard: list[str], topic: str) -> bool:
    return topic in heard


async def test_registry_refuses_reserved_ids_over_the_api(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        for reserved in ("ingester", "simulator", "Ingester", "sensornet"):
            r = await h.post("/sensors", json=sensor_spec(reserved))
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "reserved" in r.json()["detail"]
            g = await h.post(
                "/gateways",
                json={"id": reserved, "subdistrict": "jingansi", "lat": 31.2235, "lon": 121.4455},
            )
            assert g.status_code == 422, g.text
        assert (await h.get("/sensors/ingester")).status_code == 404
        csv_body = (
            "id,type,subdistrict,lat,lon,status\nNS-OK,noise,jingansi,31.2235,121.4455,installed\n"
        )
        csv_body += "simulator,noise,jingansi,31.2235,121.4455,installed\n"
        r = await h.post(
            "/sensors/import.csv", content=csv_body, headers={"Content-Type": "text/csv"}
        )
        report = r.json()
        assert r.status_code == 422, r.text
        assert [(e["row"], e["sensor_id"]) for e in report["errors"]] == [(2, "simulator")]
        assert "reserved" in report["errors"][0]["message"]
        assert (await h.get("/sensors/NS-OK")).status_code == 404  # all or nothing
        assert (await h.post("/sensors", json=sensor_spec("NS-OK"))).status_code == 201


def test_registry_refuses_reserved_ids_in_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: Mosquitto
) -> None:
    monkeypatch.setenv("SENSORNET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SENSORNET_MQTT_PORT", str(broker.port))
    monkeypatch.setenv("SENSORNET_MQTT_INGEST_USER", "svc-ingest")  # a renamed service user
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    where = [
        "--type",
        "noise",
        "--subdistrict",
        "jingansi",
        "--lat",
        "31.2235",
        "--lon",
        "121.4455",
    ]
    for reserved in ("ingester", "svc-ingest"):
        result = cli.invoke(app, ["registry", "register", reserved, *where])
        assert result.exit_code == 1, result.output
        assert "reserved" in result.output and reserved in result.output
    sheet = tmp_path / "sensors.json"
    sheet.write_text(json.dumps([{**sensor_spec("simulator")}]))
    result = cli.invoke(app, ["registry", "import", str(sheet)])
    assert result.exit_code == 1, result.output
    assert "reserved" in result.output
    listed = cli.invoke(app, ["registry", "list"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["items"] == []


async def test_a_service_identity_publishing_stores_nothing(
    settings: Settings, influx: InfluxClient
) -> None:
    """End to end (broker, ingester, InfluxDB): the ingester's login publishing a forged
    reading on its own ``%u`` topic, and the fleet identity on the ingester's, store
    nothing and leave no dead letter, while a device's reading sent after them is stored."""
    fleet = default_fleet(3)
    await register_fleet(settings, fleet)
    sensor = next(d for d in fleet if d.gateway_id is None)
    p = settings.topic_prefix
    ingest_password = settings.mqtt_ingest_password.get_secret_value()
    async with running(run_ingester, settings):
        async with mqtt_client("forger", settings.mqtt_port, "ingester", ingest_password) as svc:
            svc.publish(f"{p}/ingester/readings", b'{"pm25": 777}')
            await svc.acked()
        async with mqtt_client("fleet", settings.mqtt_port, "simulator", FLEET_PASSWORD) as fl:
            fl.publish(f"{p}/ingester/readings", b'{"pm25": 777}')
            topic, payload = next(messages(p, make_readings([sensor], 1), 1))
            fl.publish(topic.decode(), payload)
            await fl.acked()

        async def stored() -> list[dict[str, object]]:
            return rows(await influx.query(f'SELECT * FROM "{sensor.type}"'))

        assert len(await wait_until(stored)) == 1
    assert rows(await influx.query('SELECT * FROM "dead_letter"')) == []
    everything = rows(await influx.query('SHOW TAG VALUES WITH KEY = "sensor_id"'))
    assert "ingester" not in {str(r["value"]) for r in everything}
