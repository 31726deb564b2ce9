"""Sensor.Community: the airrohr firmware's push and the public data API's records decode
by the firmware's own meaning of each value type; the pull input against a local server
serving recorded answers, through the real ingester into InfluxDB, each measurement once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from support import running, wait_until

from ingest.inputs import InputContext
from ingest.inputs.sensor_community import SensorCommunityPull, area_filter, inside
from ingest.metrics import IngestStats
from sensornet.district import load_district
from sensornet.errors import PayloadError
from sensornet.influx import InfluxClient, rows
from sensornet.mqtt_wire import InboundMessage
from sensornet.registry.store import DeviceInfo
from sensornet.sensor_community import decode_api, decode_push, push_format, record_key
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester
from wiring.services import free_port

DATA = Path(__file__).parent / "data" / "sensor_community"

# What the firmware sends to its "own API" (airrohr-firmware.ino, sendDataToOptionalApis):
# SDS011 + BME280 + the node's diagnostics, values as text.
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
        {"value_type": "min_micro", "value": "36"},
        {"value_type": "max_micro", "value": "20105"},
        {"value_type": "interval", "value": "145000"},
        {"value_type": "signal", "value": "-67"},
    ],
}


def test_the_firmware_push_maps_value_types_by_the_firmwares_meaning() -> None:
    [reading] = decode_push(orjson.dumps(PUSH)).readings
    assert (reading.sensor_id, reading.scheme, reading.ts_ns) == ("13597771", "sc_chip", None)
    # SDS_P1 is PM10 and SDS_P2 PM2.5; pressure in Pa becomes the catalogue's hPa;
    # the node's diagnostics are not readings
    assert reading.values == pytest.approx(
        {"pm10": 23.17, "pm25": 11.40, "temperature": 19.82, "pressure": 1016.5434,
         "humidity": 55.27}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value_type", "key"),
    [
        ("PMS_P0", "pm1"), ("PMS_P1", "pm10"), ("PMS_P2", "pm25"),
        ("HPM_P1", "pm10"), ("HPM_P2", "pm25"),  # the value is hpm_pm10_sum, whatever its label
        ("NPM_P1", "pm10"), ("SPS30_P2", "pm25"), ("SPS30_P4", "pm4"), ("IPS_P0", "pm1"),
        ("temperature", "temperature"), ("humidity", "humidity"),  # DHT22: no prefix
        ("P1", "ppd_p1"),  # the PPD42NS counts particles, no prefix: not PM10 in µg/m³
        ("DNMS_noise_LAeq", "laeq"), ("SCD30_co2_ppm", "co2"), ("SHT3X_humidity", "humidity"),
    ],
)  # fmt: skip
def test_each_sensors_value_types(value_type: str, key: str) -> None:
    body = {"esp8266id": "1", "sensordatavalues": [{"value_type": value_type, "value": "7.5"}]}
    assert decode_push(orjson.dumps(body)).readings[0].values == {key: 7.5}


def test_the_sensor_community_api_shape_by_x_pin_and_x_sensor() -> None:
    values = [{"value_type": "P1", "value": "23.17"}, {"value_type": "P2", "value": "11.40"}]
    body = {"software_version": "NRZ-2020-133", "sensordatavalues": values}
    [reading] = decode_push(orjson.dumps(body), "esp8266-13597771", "1").readings
    assert (reading.sensor_id, reading.values) == ("13597771", {"pm10": 23.17, "pm25": 11.40})
    # through the format decoder, the headers as the HTTP input passes them
    decoded = push_format(orjson.dumps(body), "http/community/x-sensor=esp32-AB12/x-pin=1", 4096)
    assert decoded.readings[0].sensor_id == "AB12"


@pytest.mark.parametrize(
    ("body", "x_sensor", "x_pin", "reason"),
    [
        ({**PUSH, "esp8266id": "13597771"}, "esp8266-999", None, "foreign_sensor"),
        ({**PUSH, "esp8266id": "../../etc"}, None, None, "bad_shape"),
        ({**PUSH, "esp8266id": 13597771}, None, None, "bad_shape"),
        ({"sensordatavalues": PUSH["sensordatavalues"]}, None, None, "bad_shape"),
        ({**PUSH, "sensordatavalues": []}, None, None, "no_values"),
        ({**PUSH, "sensordatavalues": [{"value_type": "signal", "value": "-60"}]}, None, None,
         "no_values"),
        ({**PUSH, "sensordatavalues": [{"value_type": "SDS_P1", "value": "1"}] * 2}, None,
         None, "duplicate_key"),
        ({**PUSH, "sensordatavalues": [{"value_type": "SDS_P1", "value": "1"}] * 101}, None,
         None, "too_many"),
        ({**PUSH, "sensordatavalues": [{"value_type": "a\nb", "value": "1"}]}, None, None,
         "bad_shape"),
        ({**PUSH, "sensordatavalues": [{"value_type": "SDS_P1", "value": None}]}, None, None,
         "bad_shape"),
        (PUSH, None, "99", "bad_shape"),
        (PUSH, "raspi-1", None, "bad_shape"),
    ],
)  # fmt: skip
def test_hostile_pushes_are_refused_with_a_reason(
    body: object, x_sensor: str | None, x_pin: str | None, reason: str
) -> None:
    with pytest.raises(PayloadError) as err:
        decode_push(orjson.dumps(body), x_sensor, x_pin)
    assert err.value.reason == reason


def test_a_value_that_is_no_number_goes_on_for_validation_to_refuse() -> None:
    values = [{"value_type": "SDS_P1", "value": "nan"}, {"value_type": "SDS_P2", "value": "x"}]
    body = {"esp8266id": "1", "sensordatavalues": values}
    values = decode_push(orjson.dumps(body)).readings[0].values
    assert values["pm25"] == "x" and values["pm10"] != values["pm10"]  # NaN


def recorded(name: str, times: dict[str, int]) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    for label, seconds in times.items():
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        text = text.replace(label, stamp)
    return text.encode()


def test_data_api_records_by_sensor_type() -> None:
    t = int(time.time()) - 180
    decoded = decode_api(recorded("pull1.json", {"TIMESTAMP_1": t, "TIMESTAMP_2": t + 1}))
    got = [(r.sensor_id, r.scheme, r.ts_ns, r.values) for r in decoded.readings]
    assert got[0] == ("90001", "sc_location", t * 10**9, {"pm10": 18.8, "pm25": 9.6})
    assert got[1][3] == pytest.approx(
        {"temperature": 21.37, "pressure": 1013.25, "humidity": 63.1}
    )  # pressure_at_sealevel is the API's computation, not a measurement
    assert len(got) == 5 and decoded.rejects == []
    assert record_key(orjson.loads(recorded("pull1.json", {}))[0]) == ("id", "5617052234")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"id": 1, "timestamp": "2026-12-06 10:00:00", "sensor": {}}, "bad_shape"),
        ({"id": 1, "timestamp": "yesterday", "location": {"id": 1},
          "sensor": {"sensor_type": {"name": "SDS011"}},
          "sensordatavalues": [{"value_type": "P1", "value": "1"}]}, "bad_timestamp"),
        ({"id": 1, "timestamp": "2026-12-06 10:00:00", "location": {"id": "1; DROP"},
          "sensor": {}, "sensordatavalues": []}, "bad_shape"),
        ("not a record", "bad_shape"),
    ],
)  # fmt: skip
def test_a_bad_record_is_refused_alone(record: object, reason: str) -> None:
    good = orjson.loads(recorded("pull1.json", {"TIMESTAMP_1": 1_795_000_000}))[0]
    decoded = decode_api(orjson.dumps([record, good]))
    assert [r.error.reason for r in decoded.rejects] == [reason]
    assert len(decoded.readings) == 1


def test_the_area_filter_covers_the_district() -> None:
    district = load_district()
    assert area_filter(district) == "31.26650,121.45350,6.6"
    assert inside({"location": {"latitude": "31.229", "longitude": "121.447"}}, district.bbox)
    assert not inside({"location": {"latitude": "49.576", "longitude": "10.988"}}, district.bbox)


class Recorded:
    """Serves the recorded answers in turn (the last one again and again)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.paths: list[str] = []


@pytest.fixture
def data_api() -> Iterator[tuple[str, Recorded]]:
    t = int(time.time()) - 300
    times = {"TIMESTAMP_1": t, "TIMESTAMP_2": t + 1, "TIMESTAMP_3": t + 60}
    replay = Recorded([recorded("pull1.json", times), recorded("pull2.json", times)])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            replay.paths.append(self.path)
            body = replay.answers[min(len(replay.paths) - 1, len(replay.answers) - 1)]
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", replay
    finally:
        server.shutdown()
        server.server_close()


async def test_the_pull_stores_each_measurement_once_and_refuses_with_reasons(
    settings: Settings, influx: InfluxClient, data_api: tuple[str, Recorded]
) -> None:
    url, replay = data_api
    nodes = [
        DeviceInfo("SC-1", "community_air", "jingansi", 31.229, 121.447, "active",
                   sc_location="90001"),
        DeviceInfo("SC-3", "community_air", "daninglu", 31.262, 121.451, "active",
                   sc_location="90003"),
    ]  # fmt: skip
    await register_fleet(settings, nodes)
    pulling = settings.model_copy(
        update={"ingest_inputs": ["sensor_community"], "sc_pull_url": url,
                "sc_pull_interval_s": 0.2}
    )  # fmt: skip
    async with running(run_ingester, pulling):

        async def pulled_four_times() -> bool:
            return len(replay.paths) >= 4

        await wait_until(pulled_four_times)
        await asyncio.sleep(0.5)  # the last pull's batch made durable
        stored = rows(await influx.query('SELECT * FROM "community_air" ORDER BY time'))
        letters = rows(await influx.query('SELECT * FROM "dead_letter"'))

    assert replay.paths[0] == "/airrohr/v1/filter/area=31.26650,121.45350,6.6"
    got = [(r["sensor_id"], r["pm10"], r["pm25"], r["temperature"], r["pressure"]) for r in stored]
    assert got == [
        ("SC-1", 18.8, 9.6, None, None),
        ("SC-1", None, None, 21.37, 1013.25),
        ("SC-1", 19.4, 10.1, None, None),  # pull2's new record; its repeats were skipped
    ]
    assert sorted((r["device"], r["reason"], r.get("device_raw")) for r in letters) == [
        ("SC-3", "not_finite", None),
        ("_unknown", "unknown_sensor", "sc_location:90002"),
    ]


async def test_a_failing_data_api_delivers_nothing_and_the_next_pull_recovers(
    settings: Settings,
) -> None:
    """500, a body that is not JSON, an object instead of an array, a dropped connection:
    each pull is counted as failed and delivers nothing; the next good answer delivers."""
    good = recorded("pull1.json", {"TIMESTAMP_1": 1_795_000_000, "TIMESTAMP_2": 1_795_000_001})
    answers: list[tuple[int, bytes]] = [(500, b"oops"), (200, b"<html>"), (200, b"{}"),
                                        (0, b""), (200, good)]  # fmt: skip
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            status, body = answers[min(len(calls) - 1, len(answers) - 1)]
            if status == 0:  # drop the connection without an answer
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    delivered: list[InboundMessage] = []
    stats = IngestStats()
    context = InputContext(
        settings.model_copy(update={"sc_pull_url": f"http://127.0.0.1:{server.server_port}",
                                    "sc_pull_interval_s": 3600, "sc_pull_timeout_s": 2}),
        lambda messages, size: delivered.extend(messages), None, stats,  # type: ignore[arg-type]
    )  # fmt: skip
    try:
        async with SensorCommunityPull(context) as pull:
            await pull.ready()  # the first pull, at start
            for _ in range(4):
                await pull.pull_once()
    finally:
        server.shutdown()
        server.server_close()
    assert pull.pulls == 5 and pull.failures == 4
    assert stats.pulls == {("sensor_community", "failed"): 4, ("sensor_community", "ok"): 1}
    [message] = delivered
    assert message.fmt == "sensor.community.api"
    assert len(orjson.loads(message.payload)) == 4  # the record outside the district dropped
