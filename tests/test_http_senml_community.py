"""SenML (JSON and CBOR) and the airrohr firmware's push through the HTTP input over a
real socket, into the real ingester and InfluxDB: answered only once durable, refusals
answered 422 with the reason and kept as dead letters of the device."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import cbor2
import httpx
import orjson
import pytest
from pydantic import SecretStr
from support import running

from sensornet.broker_auth import issue_credentials
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.senml import JSON_TO_CBOR
from sensornet.settings import Settings
from wiring.parts import run_ingester
from wiring.services import free_port

TOKEN = "community-token-0123456789"
URN = "urn:dev:ow:10e2073a01080063"
FLEET = [
    DeviceInfo("WS-H1", "weather", "jingansi", 31.22, 121.45, "active", senml_name=URN),
    DeviceInfo("SC-H1", "community_air", "jingansi", 31.22, 121.45, "active",
               sc_chip="13597771"),
    DeviceInfo("SC-H2", "community_air", "caojiadu", 31.23, 121.44, "active",
               sc_chip="2222222"),
]  # fmt: skip
# What the airrohr firmware posts to its "own API" (sendDataToOptionalApis)
PUSH = {
    "esp8266id": "13597771",
    "software_version": "NRZ-2020-133",
    "sensordatavalues": [
        {"value_type": "SDS_P1", "value": "23.17"},
        {"value_type": "SDS_P2", "value": "11.40"},
        {"value_type": "BME280_temperature", "value": "19.82"},
        {"value_type": "BME280_pressure", "value": "101654.34"},
        {"value_type": "BME280_humidity", "value": "55.27"},
        {"value_type": "samples", "value": "742381"},
        {"value_type": "signal", "value": "-67"},
    ],
}


@pytest.fixture
async def http(
    settings: Settings, influx: InfluxClient
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    port = free_port()
    http_settings = settings.model_copy(
        update={"ingest_inputs": ["http"], "ingest_http_port": port,
                "ingest_http_integrations": {"community": SecretStr(TOKEN)}}
    )  # fmt: skip
    async with open_registry(http_settings.registry_database_url) as registry:
        await upsert_devices(registry, FLEET)
        passwords = await issue_credentials(registry, ["WS-H1", "SC-H1", "SC-H2"], "test")
    base = f"http://127.0.0.1:{port}"
    async with running(run_ingester, http_settings), httpx.AsyncClient(base_url=base) as client:
        yield client, passwords


async def test_senml_json_and_cbor_over_http(
    http: tuple[httpx.AsyncClient, dict[str, str]], influx: InfluxClient
) -> None:
    client, passwords = http
    auth = httpx.BasicAuth("WS-H1", passwords["WS-H1"])
    t0 = int(time.time()) - 120
    pack = [{"bn": f"{URN}:", "bt": t0, "n": "temperature", "u": "Far", "v": 73.4},
            {"n": "seq", "v": 1}]  # fmt: skip
    r = await client.post("/v1/devices/WS-H1/readings", content=orjson.dumps(pack), auth=auth,
                          headers={"content-type": "application/senml+json"})  # fmt: skip
    assert r.status_code == 200, r.text
    cbor = cbor2.dumps([{JSON_TO_CBOR["bn"]: f"{URN}:", JSON_TO_CBOR["bt"]: t0 + 60,
                         JSON_TO_CBOR["n"]: "humidity", JSON_TO_CBOR["u"]: "%RH",
                         JSON_TO_CBOR["v"]: 61}])  # fmt: skip
    r = await client.post("/v1/devices/WS-H1/readings", content=cbor, auth=auth,
                          headers={"content-type": "application/senml+cbor"})  # fmt: skip
    assert r.status_code == 200, r.text
    stored = rows(await influx.query('SELECT * FROM "weather" ORDER BY time'))
    assert [(s["temperature"], s["humidity"], s["seq"]) for s in stored] == [
        (pytest.approx(23.0), None, 1), (None, 61.0, None)
    ]  # fmt: skip
    r = await client.post("/v1/devices/WS-H1/readings", auth=auth,
                          content=orjson.dumps([{"bver": 11, "n": "temperature", "v": 1}]),
                          headers={"content-type": "application/senml+json"})  # fmt: skip
    assert r.status_code == 422 and r.json()["reason"] == "senml_version"


async def test_the_firmware_push_to_its_own_api(
    http: tuple[httpx.AsyncClient, dict[str, str]], influx: InfluxClient
) -> None:
    client, _ = http
    # the firmware's custom API settings: this path, user = the integration, password = token
    route = "/v1/integrations/community/sensor.community"
    auth = httpx.BasicAuth("community", TOKEN)
    headers = {"x-sensor": "esp8266-13597771", "x-mac-id": "esp8266-a020a6123456"}
    r = await client.post(route, content=orjson.dumps(PUSH), auth=auth, headers=headers)
    assert r.status_code == 200, r.text
    # the Sensor.Community API's shape: prefix stripped, X-PIN says which sensor
    values = [{"value_type": "P1", "value": "30.00"}, {"value_type": "P2", "value": "15.00"}]
    sds = {"software_version": "NRZ-2020-133", "sensordatavalues": values}
    r = await client.post(route, content=orjson.dumps(sds), auth=auth,
                          headers={"x-sensor": "esp8266-13597771", "x-pin": "1"})  # fmt: skip
    assert r.status_code == 200, r.text
    stored = rows(await influx.query('SELECT * FROM "community_air" ORDER BY time'))
    assert [(s["sensor_id"], s["pm10"], s["pm25"], s["pressure"]) for s in stored] == [
        ("SC-H1", 23.17, 11.40, pytest.approx(1016.5434)), ("SC-H1", 30.0, 15.0, None)
    ]  # fmt: skip

    # a value type the catalogue's community_air has no quantity for is counted, not lost
    pm_co2 = [{"value_type": "SDS_P1", "value": "5.0"},
              {"value_type": "SCD30_co2_ppm", "value": "612"}]  # fmt: skip
    co2 = {"esp8266id": "13597771", "sensordatavalues": pm_co2}
    r = await client.post(route, content=orjson.dumps(co2), auth=auth)
    assert r.status_code == 200, r.text
    counted = rows(await influx.query('SELECT * FROM "unknown_keys"'))
    assert [(c["device"], c["key"], c["count"]) for c in counted] == [("SC-H1", "co2", 1)]

    # refusals: a chip nobody registered, a body and X-Sensor that disagree, a bad header
    unknown = {**PUSH, "esp8266id": "424242"}
    r = await client.post(route, content=orjson.dumps(unknown), auth=auth)
    assert r.status_code == 422 and r.json()["reason"] == "unknown_sensor"
    r = await client.post(route, content=orjson.dumps(PUSH), auth=auth,
                          headers={"x-sensor": "esp8266-1"})  # fmt: skip
    assert r.status_code == 422 and r.json()["reason"] == "foreign_sensor"
    r = await client.post(route, content=orjson.dumps(PUSH), auth=auth,
                          headers={"x-pin": "1/../x"})  # fmt: skip
    assert r.status_code == 400 and r.json()["reason"] == "bad_header"
    letters = rows(await influx.query('SELECT * FROM "dead_letter"'))
    assert sorted((str(x["reason"]), x.get("device_raw")) for x in letters) == [
        ("foreign_sensor", None), ("unknown_sensor", "sc_chip:424242")
    ]  # fmt: skip


async def test_each_node_pushes_with_its_own_credentials(
    http: tuple[httpx.AsyncClient, dict[str, str]], influx: InfluxClient, settings: Settings
) -> None:
    """The firmware's "own API" user and password set per node: the node's registry id
    (or its ``esp8266-<chip id>``) and its own password, on the same path as the shared
    token. A wrong password is 401; a node pushing as another node is refused, at the door
    (403) when its X-Sensor names the other, by the decoder when only the body does."""
    client, passwords = http
    route = "/v1/integrations/community/sensor.community"
    mine = {"x-sensor": "esp8266-13597771", "x-mac-id": "esp8266-a020a6123456"}
    own = httpx.BasicAuth("SC-H1", passwords["SC-H1"])
    r = await client.post(route, content=orjson.dumps(PUSH), auth=own, headers=mine)
    assert r.status_code == 200, r.text
    as_firmware = httpx.BasicAuth("esp8266-13597771", passwords["SC-H1"])
    second = {**PUSH, "sensordatavalues": [{"value_type": "SDS_P1", "value": "7.5"}]}
    r = await client.post(route, content=orjson.dumps(second), auth=as_firmware, headers=mine)
    assert r.status_code == 200, r.text

    wrong = httpx.BasicAuth("SC-H1", passwords["SC-H2"])
    r = await client.post(route, content=orjson.dumps(PUSH), auth=wrong, headers=mine)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == "bad_credentials" and "www-authenticate" in r.headers

    other = httpx.BasicAuth("SC-H2", passwords["SC-H2"])
    r = await client.post(route, content=orjson.dumps(PUSH), auth=other, headers=mine)
    assert r.status_code == 403 and r.json()["reason"] == "forbidden", r.text
    assert "13597771" in r.json()["detail"]
    r = await client.post(route, content=orjson.dumps(PUSH), auth=other)  # body names SC-H1
    assert r.status_code == 403 and r.json()["reason"] == "forbidden", r.text
    theirs_in_body = {"x-sensor": "esp8266-2222222"}
    r = await client.post(route, content=orjson.dumps(PUSH), auth=other, headers=theirs_in_body)
    assert r.status_code == 422 and r.json()["reason"] == "foreign_sensor", r.text
    # a device's credentials open only the routes that take them: not another integration's
    r = await client.post("/v1/integrations/community/chirpstack", content=b"{}", auth=own)
    assert r.status_code == 401, r.text

    # a node registered and given its password while the ingester runs pushes at once,
    # logging in by its chip id as the firmware names it
    async with open_registry(settings.registry_database_url) as registry:
        node = DeviceInfo("SC-H3", "community_air", "jingansi", 31.22, 121.45, "active",
                          sc_chip="3333333")  # fmt: skip
        await upsert_devices(registry, [node])
        fresh = (await issue_credentials(registry, ["SC-H3"], "test"))["SC-H3"]
    third = {**PUSH, "esp8266id": "3333333"}
    r = await client.post(route, content=orjson.dumps(third),
                          headers={"x-sensor": "esp8266-3333333"},
                          auth=httpx.BasicAuth("esp8266-3333333", fresh))  # fmt: skip
    assert r.status_code == 200, r.text

    stored = rows(await influx.query('SELECT * FROM "community_air" ORDER BY time'))
    assert [(s["sensor_id"], s["pm10"]) for s in stored] == [
        ("SC-H1", 23.17), ("SC-H1", 7.5), ("SC-H3", 23.17)
    ]  # fmt: skip
    letters = rows(await influx.query('SELECT * FROM "dead_letter"'))
    assert [x["reason"] for x in letters] == ["foreign_sensor"]
