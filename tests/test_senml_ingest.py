"""SenML through the real ingester: JSON and CBOR packs over Mosquitto, names resolved
against the registry's SenML names, readings in InfluxDB with their seq, every refusal a
dead letter with its reason and booked to the device."""

from __future__ import annotations

import time

import cbor2
import orjson
from support import mqtt_client, running, wait_until

from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.senml import JSON_TO_CBOR
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester

URN = "urn:dev:ow:10e2073a01080063"
MAC = "urn:dev:mac:0024befffe804ff1"
WEATHER = DeviceInfo("WS-7", "weather", "jingansi", 31.22, 121.45, "active", senml_name=URN)
ATTACHED = DeviceInfo(
    "AQ-9", "air_quality", "jingansi", 31.22, 121.45, "active", gateway_id="GW-5",
    senml_name=MAC,
)  # fmt: skip


def cbor(records: list[dict[str, object]]) -> bytes:
    return cbor2.dumps([{JSON_TO_CBOR[k]: v for k, v in r.items()} for r in records])


async def test_senml_json_and_cbor_are_stored_and_refused_as_the_rfc_says(
    settings: Settings, influx: InfluxClient
) -> None:
    await register_fleet(settings, [WEATHER, ATTACHED])
    p = settings.topic_prefix
    t0 = int(time.time()) - 120
    messages = [
        # the device's own topic, names by its URN, Fahrenheit converted, seq kept
        (f"{p}/WS-7/readings", orjson.dumps([
            {"bn": f"{URN}:", "bt": t0, "n": "seq", "v": 1},
            {"n": "temperature", "u": "Far", "v": 73.4},
            {"n": "pressure", "u": "Pa", "v": 101325}])),
        # the same in CBOR, one minute later (relative to bt)
        (f"{p}/WS-7/readings", cbor([
            {"bn": f"{URN}:", "bt": t0 + 60, "n": "seq", "v": 2},
            {"n": "temperature", "u": "Cel", "v": 24.5},
            {"n": "humidity", "u": "%RH", "v": 61}])),
        # a unit of another dimension: that reading refused, its seq kept
        (f"{p}/WS-7/readings", orjson.dumps([
            {"bn": f"{URN}:", "bt": t0 + 120, "n": "seq", "v": 3},
            {"n": "temperature", "u": "%RH", "v": 50}])),
        # a newer SenML version and a must-understand label: the pack refused whole
        (f"{p}/WS-7/readings", orjson.dumps([{"bver": 11, "n": "temperature", "v": 1}])),
        (f"{p}/WS-7/readings", orjson.dumps([{"n": "temperature", "v": 1, "x_": 1}])),
        # a device's topic naming another sensor's URN: not its own to report
        (f"{p}/WS-7/readings", orjson.dumps([{"bn": f"{MAC}/", "n": "pm25", "v": 1.0}])),
        # the gateway's pack names its attached sensor by a MAC URN (IPv6-style colons)
        (f"{p}/GW-5/pack", orjson.dumps([
            {"bn": f"{MAC}/", "bt": t0, "n": "pm25", "u": "ug/m3", "v": 35.0},
            {"n": "co", "u": "ug/m3", "v": 800}])),
    ]  # fmt: skip
    async with running(run_ingester, settings):
        password = settings.fleet_password()
        async with mqtt_client("senml-test", settings.mqtt_port, "simulator", password) as client:
            for topic, payload in messages:
                client.publish(topic, payload)
            await client.acked()

        async def settled() -> list[dict[str, object]]:
            letters = rows(await influx.query('SELECT * FROM "dead_letter"'))
            return letters if len(letters) == 4 else []

        letters = await wait_until(settled)
        weather = rows(await influx.query('SELECT * FROM "weather" ORDER BY time'))
        air = rows(await influx.query('SELECT * FROM "air_quality"'))

    assert [(r["sensor_id"], r["seq"]) for r in weather] == [("WS-7", 1), ("WS-7", 2)]
    assert abs(float(weather[0]["temperature"]) - 23.0) < 1e-9  # 73.4 °F
    assert abs(float(weather[0]["pressure"]) - 1013.25) < 1e-9  # Pa to the catalogue's hPa
    assert (weather[1]["temperature"], weather[1]["humidity"]) == (24.5, 61.0)
    assert [(r["sensor_id"], r["pm25"], r["co"]) for r in air] == [("AQ-9", 35.0, 0.8)]
    got = sorted((str(r["device"]), str(r["reason"]), r.get("seq")) for r in letters)
    assert got == [
        ("WS-7", "foreign_sensor", None),
        ("WS-7", "senml_must_understand", None),
        ("WS-7", "senml_unit_mismatch", 3),
        ("WS-7", "senml_version", None),
    ]
