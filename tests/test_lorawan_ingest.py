"""The LoRaWAN input end to end: a real Mosquitto stands in for the network server's
broker, a real InfluxDB, the production ingester reading ChirpStack v4 and The Things
Stack v3 envelopes (the projects' own examples, the simulator's, and hostile ones)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from support import running, wait_until

from gateway_sim.lorawan import chirpstack_uplink, encode_values, rfc3339, tts_uplink
from sensornet.bulk_publisher import BulkPublisher
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient, rows
from sensornet.lorawan.keymap import load_keymap
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings
from wiring.lorawan import NS_PUBLISHER, network_server_broker
from wiring.parts import run_api, run_ingester
from wiring.services import Mosquitto, free_port

DATA = Path(__file__).parent / "data" / "lorawan"
SUBSCRIBER, SUB_PW, PUB_PW = (
    "sensornet-lorawan",
    secrets.token_urlsafe(12),
    secrets.token_urlsafe(12),
)

WL = DeviceInfo("WL-L1", "waterlogging", "beizhan", 31.247, 121.475, "active", None,
                "70B3D57ED005B89A")  # fmt: skip
WS = DeviceInfo("WS-L1", "weather", "jingansi", 31.223, 121.446, "active", None,
                "0004A30B001C0530")  # the documented TTS example's device  # fmt: skip
NS = DeviceInfo("NS-L1", "noise", "jingansi", 31.223, 121.446, "active", None,
                "0101010101010101")  # the documented ChirpStack example's device  # fmt: skip


@pytest.fixture
def ns_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = network_server_broker(tmp_path / "ns", free_port(), SUBSCRIBER, SUB_PW, PUB_PW)
    broker.start()
    yield broker
    broker.stop()


def lorawan_settings(settings: Settings, broker: Mosquitto, network: str) -> Settings:
    return settings.model_copy(
        update={
            "ingest_inputs": ["lorawan"],
            "lorawan_network": network,
            "lorawan_mqtt_port": broker.port,
            "lorawan_mqtt_user": SUBSCRIBER,
            "lorawan_mqtt_password": SecretStr(SUB_PW),
            "lorawan_mqtt_client_id": f"lorawan-{secrets.token_hex(3)}",
            "ingest_metrics_port": 0,
        }
    )


async def publish(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    publisher = BulkPublisher("127.0.0.1", broker.port, "ns", NS_PUBLISHER, PUB_PW)
    assert await publisher.publish_all((t.encode(), p) for t, p in messages) == len(messages)


async def register(settings: Settings, *devices: DeviceInfo) -> None:
    async with open_registry(settings.registry_database_url) as engine:
        await upsert_devices(engine, devices)


async def points(influx: InfluxClient, measurement: str, sensor: str) -> list[dict[str, Any]]:
    q = f'SELECT * FROM "{measurement}" WHERE "sensor_id" = $s'
    return rows(await influx.query(q, {"s": sensor}))


async def letters(influx: InfluxClient) -> list[dict[str, Any]]:
    return rows(await influx.query('SELECT * FROM "dead_letter"'))


def now_ns() -> int:
    return time.time_ns() - 180 * 10**9  # everything sent stays in the past


async def test_chirpstack_over_mqtt_decoded_raw_replayed_and_status(
    settings: Settings, influx: InfluxClient, ns_broker: Mosquitto
) -> None:
    settings = lorawan_settings(settings, ns_broker, "chirpstack")
    await register(settings, WL, WS, NS)
    types = load_catalogue().types
    t0 = now_ns()
    raw = encode_values(types["waterlogging"], {"depth": 12.3}, load_keymap(), battery_v=3.3)
    first = chirpstack_uplink(WL.dev_eui or "", "wl", 7, t0, data=raw, rssi=-97, snr=-3.5,
                              gateways=3)  # fmt: skip
    values = {"temperature": 21.5, "humidity": 60, "battery": 80}
    decoded = chirpstack_uplink(WS.dev_eui or "", "ws", 1, t0 + 10**9, decoded=values)
    # the documented example as ChirpStack publishes it (its device is a noise sensor with
    # no codec: the raw byte 0xAA is kept in a dead letter; its radio health is stored)
    documented = (DATA / "chirpstack_up.json").read_bytes()
    doc_topic = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
    status_topic = doc_topic.replace("/up", "/status")
    status = json.loads((DATA / "chirpstack_status.json").read_text())
    status["time"] = rfc3339(t0 + 2 * 10**9)
    async with running(run_ingester, settings):
        await publish(ns_broker, [first, decoded, first, (doc_topic, documented),
                                  (status_topic, orjson.dumps(status))])  # fmt: skip

        async def landed() -> bool:
            return len(await letters(influx)) >= 1 and len(
                await points(influx, "device_health", "NS-L1")) >= 2  # fmt: skip

        await wait_until(landed, timeout_s=20)
    wl = await points(influx, "waterlogging", "WL-L1")
    assert [(p["time"], p["depth"], p["seq"]) for p in wl] == [(t0, 12.3, 7)]  # replay: once
    ws = await points(influx, "weather", "WS-L1")
    assert [(p["temperature"], p["humidity"], p["seq"]) for p in ws] == [(21.5, 60.0, 1)]
    health = {p["sensor_id"]: p for p in rows(await influx.query('SELECT * FROM "device_health"'))}
    assert health["WL-L1"]["rssi"] == -97 and health["WL-L1"]["gateways"] == 3
    assert health["WL-L1"]["battery_v"] == 3.3 and health["WL-L1"]["f_cnt"] == 7
    assert health["WS-L1"]["battery_pct"] == 80
    ns_health = await points(influx, "device_health", "NS-L1")
    assert {(p["rssi"], p["snr"]) for p in ns_health if p["rssi"] is not None} == {(-36, 10.5)}
    assert any(p["battery_pct"] == 88.3 and p["margin"] == 10 for p in ns_health)
    [letter] = await letters(influx)
    assert (letter["device"], letter["reason"], letter["seq"]) == ("NS-L1", "no_codec", 0)
    assert json.loads(base64.b64decode(letter["payload_b64"]))["data"] == "qg=="


async def test_tts_over_mqtt_documented_simulated_hostile_and_rejoin(
    settings: Settings, influx: InfluxClient, ns_broker: Mosquitto, api_keys: dict[str, str]
) -> None:
    settings = lorawan_settings(settings, ns_broker, "tts")
    await register(settings, WL, WS)
    t0 = now_ns()
    eui = WL.dev_eui or ""
    types = load_catalogue().types
    keys = load_keymap()

    def wl(f_cnt: int, at: int, **kw: Any) -> tuple[str, bytes]:
        data = encode_values(types["waterlogging"], {"depth": 1.0 + f_cnt / 10}, keys)
        return tts_uplink(eui, "wl-l1", f_cnt, at, data=data, **kw)

    documented = json.loads((DATA / "tts_up.json").read_text())
    documented["uplink_message"]["received_at"] = rfc3339(t0 + 5 * 10**9)
    documented["uplink_message"]["decoded_payload"] = {"temperature": 1.0, "humidity": 64}
    mismatched = json.loads(wl(99, t0)[1])
    mismatched["end_device_ids"]["device_id"] = "someone-else"
    unknown = tts_uplink("0202020202020202", "ghost", 1, t0, decoded={"depth": 1.0})
    simulated = wl(50, t0 + 50 * 10**9, simulated=True)
    # fCnt 0..39 with 17 lost on the air, a rejoin (the counter restarts at 0), then 0..4
    run = [wl(i, t0 + i * 10**9) for i in range(40) if i != 17] + [
        wl(i, t0 + (60 + i) * 10**9) for i in range(5)]  # fmt: skip
    topic = "v3/sensornet-sim@jingan/devices/wl-l1/up"
    messages = [*run, ("v3/app1@tenant1/devices/dev1/up", orjson.dumps(documented)),
                (topic, orjson.dumps(mismatched)), unknown, simulated,
                (topic, b"\x00" * 300_000)]  # fmt: skip
    async with running(run_ingester, settings), running(run_api, settings):
        await publish(ns_broker, messages)

        async def landed() -> bool:
            return len(await letters(influx)) >= 4

        await wait_until(landed, timeout_s=20)
        base = f"http://{settings.api_host}:{settings.api_port}"
        headers = {"Authorization": f"Bearer {api_keys['viewer']}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 / 1e9 - 60))
            r = await http.get("/devices/WL-L1/accounting", params={"start": start})
            account = r.json()
    assert len(await points(influx, "waterlogging", "WL-L1")) == 44
    assert (account["stored"], account["missing"], account["resets"]) == (44, 1, 1), account
    assert account["rejected_by_reason"] == {"simulated": 1}
    ws = await points(influx, "weather", "WS-L1")
    assert [(p["temperature"], p["humidity"], p["seq"]) for p in ws] == [(1.0, 64.0, 1)]
    reasons = sorted((d["reason"], d["device"]) for d in await letters(influx))
    assert reasons == [("oversize", "_unknown"), ("simulated", "WL-L1"),
                       ("topic_mismatch", "_unknown"), ("unknown_sensor", "_unknown")]  # fmt: skip


async def test_http_integrations_chirpstack_events_and_tts_webhook(
    settings: Settings, influx: InfluxClient
) -> None:
    """ChirpStack's HTTP integration (one URL, ``?event=``) and a The Things Stack webhook
    on the HTTP input: answered 200 only once durable, refusals as problem+json and dead
    letters, a retried POST stored once, other events answered and not stored."""
    token, ttn_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    settings = settings.model_copy(
        update={
            "ingest_inputs": ["http"],
            "ingest_http_port": free_port(),
            "ingest_http_integrations": {
                "chirpstack-1": SecretStr(token),
                "ttn": SecretStr(ttn_token),
            },
        }
    )
    await register(settings, WL, WS)
    t0 = now_ns()
    types, keys = load_catalogue().types, load_keymap()
    raw = encode_values(types["waterlogging"], {"depth": 4.2}, keys)
    _, cs_up = chirpstack_uplink(WL.dev_eui or "", "wl", 11, t0, data=raw)
    _, tts_up = tts_uplink(WS.dev_eui or "", "ws-l1", 3, t0,
                           decoded={"temperature_c": 19.5, "humidity_pct": 70})  # fmt: skip
    status = json.loads((DATA / "chirpstack_status.json").read_text())
    status["deviceInfo"]["devEui"] = WL.dev_eui
    status["time"] = rfc3339(t0 + 10**9)
    join = {"time": rfc3339(t0), "deviceInfo": {"devEui": WL.dev_eui}, "devAddr": "01020304"}
    base = f"http://127.0.0.1:{settings.ingest_http_port}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with (
        running(run_ingester, settings),
        httpx.AsyncClient(base_url=base, headers=headers) as http,
    ):
        chirpstack = "/v1/integrations/chirpstack-1/chirpstack"
        for _ in range(2):  # a retry of the same POST: stored once
            r = await http.post(chirpstack, params={"event": "up"}, content=cs_up)
            assert r.status_code == 200, r.text
        r = await http.post(chirpstack, params={"event": "status"}, content=orjson.dumps(status))
        assert r.status_code == 200, r.text
        r = await http.post(chirpstack, params={"event": "join"}, content=orjson.dumps(join))
        assert r.status_code == 200, r.text
        ttn = {"Authorization": f"Bearer {ttn_token}"}
        r = await http.post("/v1/integrations/ttn/tts", content=tts_up, headers=ttn)
        assert r.status_code == 200, r.text
        # refused: the documented ChirpStack example names a DevEUI nobody registered
        r = await http.post(chirpstack, params={"event": "up"},
                            content=(DATA / "chirpstack_up.json").read_bytes())  # fmt: skip
        assert r.status_code == 422 and r.json()["reason"] == "unknown_sensor", r.text
        bad = json.loads(tts_up)
        bad["uplink_message"]["f_cnt"] = -3
        r = await http.post("/v1/integrations/ttn/tts", content=orjson.dumps(bad), headers=ttn)
        assert r.status_code == 422 and r.json()["reason"] == "bad_envelope", r.text
        r = await http.post(chirpstack, params={"event": "bogus"}, content=cs_up)
        assert r.status_code == 422 and r.json()["reason"] == "not_an_uplink", r.text
    wl = await points(influx, "waterlogging", "WL-L1")
    assert [(p["time"], p["depth"], p["seq"]) for p in wl] == [(t0, 4.2, 11)]
    ws = await points(influx, "weather", "WS-L1")
    assert [(p["temperature"], p["humidity"], p["seq"]) for p in ws] == [(19.5, 70.0, 3)]
    health = await points(influx, "device_health", "WL-L1")
    assert any(p["battery_pct"] == 88.3 for p in health) and any(p["f_cnt"] == 11 for p in health)
    reasons = sorted(d["reason"] for d in await letters(influx))
    assert reasons == ["bad_envelope", "not_an_uplink", "unknown_sensor"]
