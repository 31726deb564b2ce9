"""SenML (RFC 8428) as the RFC says: its own examples of §5.1 and §6, resolved against a
registry of SenML names, and hostile variants of each rule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cbor2
import orjson
import pytest

from sensornet.catalogue import Catalogue, load_catalogue
from sensornet.codec import decode_payload
from sensornet.errors import PayloadError
from sensornet.records import Decoded
from sensornet.registry.store import DeviceInfo
from sensornet.senml import JSON_TO_CBOR, loads_cbor, resolve_pack
from sensornet.senml_resolve import SenmlContext

NOW_NS = 1_795_580_000_000_000_000
NOW_S = NOW_NS // 10**9

# A catalogue with the quantities the RFC's examples measure.
RFC_CATALOGUE = """
version: 1
types:
  - id: rfc_meter
    label_en: RFC 8428 example device
    label_zh: 示例
    interval_s: 60
    placement: any
    quantities:
      - {id: voltage, label_en: Voltage, unit: V, kind: float, min: 0, max: 500,
         typical: [200, 240], senml_unit: V}
      - {id: current, label_en: Current, unit: A, kind: float, min: 0, max: 100,
         typical: [0, 10], senml_unit: A}
      - {id: temp, label_en: Temperature, unit: "°C", kind: float, min: -40, max: 80,
         typical: [0, 30]}
      - {id: humidity, label_en: Humidity, unit: "%", kind: float, min: 0, max: 100,
         typical: [20, 90], senml_unit: "%RH"}
      - {id: lat, label_en: Latitude, unit: "°", kind: float, min: -90, max: 90,
         typical: [0, 1], senml_unit: lat}
      - {id: lon, label_en: Longitude, unit: "°", kind: float, min: -180, max: 180,
         typical: [0, 1], senml_unit: lon}
      - {id: battery, label_en: Battery, unit: "%", kind: float, min: 0, max: 100,
         typical: [20, 100], senml_unit: "%EL"}
      - {id: heat, label_en: Heat, unit: "1", kind: float, min: 0, max: 1, typical: [0, 1],
         senml_unit: "/"}
      - {id: fan, label_en: Fan, unit: "1", kind: float, min: 0, max: 1, typical: [0, 1],
         senml_unit: "/"}
      - {id: label, label_en: Label, unit: "", kind: string}
      - {id: open, label_en: Open, unit: "", kind: bool}
  - id: rfc_env
    label_en: Temperature and humidity
    label_zh: 温湿度
    interval_s: 60
    placement: any
    quantities:
      - {id: temperature, label_en: Temperature, unit: "°C", kind: float, min: -40,
         max: 80, typical: [0, 30]}
      - {id: humidity, label_en: Humidity, unit: "%", kind: float, min: 0, max: 100,
         typical: [20, 90], senml_unit: "%RH"}
  - id: rfc_light
    label_en: Light
    label_zh: 灯
    interval_s: 60
    placement: any
    quantities:
      - {id: level, label_en: Level, unit: "1", kind: float, min: 0, max: 1,
         typical: [0, 1], senml_unit: "/"}
"""


def device(dev_id: str, type_id: str, senml_name: str | None = None) -> DeviceInfo:
    return DeviceInfo(dev_id, type_id, "jingansi", 31.2, 121.4, "active", senml_name=senml_name)


DEVICES = [
    device("OW-1", "rfc_meter", "urn:dev:ow:10e2073a01080063"),
    # The RFC's §5.1.2 example drops the last digit: a name that is a prefix of OW-1's.
    device("OW-2", "rfc_meter", "urn:dev:ow:10e2073a0108006"),
    device("H-2", "rfc_env", "2001:db8::2"),
    device("H-1", "rfc_env", "2001:db8::1"),
    device("L-3", "rfc_light", "2001:db8::3"),
    device("L-4", "rfc_light", "2001:db8::4"),
    device("MAC-1", "rfc_env", "urn:dev:mac:0024befffe804ff1"),
    device("WS-1", "weather"),  # no SenML name: its id is its name
]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    path: Path = tmp_path_factory.mktemp("cat") / "catalogue.yaml"
    path.write_text(RFC_CATALOGUE, encoding="utf-8")
    rfc = load_catalogue(path)
    return Catalogue({**rfc.types, **load_catalogue().types})


def context(catalogue: Catalogue, publisher: str | None = None) -> SenmlContext:
    by_name = {d.senml_name or d.id: d for d in DEVICES}
    by_id = {d.id: d for d in DEVICES}
    return SenmlContext(catalogue, by_name.get, None if publisher is None else by_id.get(publisher))


def decode(catalogue: Catalogue, pack: Any, publisher: str | None = None) -> Decoded:
    payload = pack if isinstance(pack, bytes) else orjson.dumps(pack)
    return decode_payload(payload, senml=context(catalogue, publisher), now_ns=NOW_NS)


def by_time(decoded: Decoded) -> dict[tuple[str | None, int | None], dict[str, Any]]:
    return {(r.sensor_id, r.ts_ns): r.values for r in decoded.readings}


def reasons(decoded: Decoded) -> list[str]:
    return [r.error.reason for r in decoded.rejects]


def ns(seconds: float) -> int:
    return round(seconds * 1e6) * 1000


# --- RFC 8428 §5.1: the examples, as the RFC prints them ----------------------------------

SINGLE = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]  # §5.1.1
MULTIPLE = [  # §5.1.2
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "u": "A", "v": 1.2},
]
MULTIPLE_TIMED = [  # §5.1.2, second example (and §6's CBOR)
    {"bn": "urn:dev:ow:10e2073a0108006:", "bt": 1.276020076001e09, "bu": "A", "bver": 5,
     "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]  # fmt: skip
MEASUREMENTS = [  # §5.1.3
    {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
    {"u": "lon", "v": 24.30621},
    {"u": "lat", "v": 60.07965},
    {"t": 60, "v": 20.3},
    {"u": "lon", "t": 60, "v": 24.30622},
    {"u": "lat", "t": 60, "v": 60.07965},
    {"t": 120, "v": 20.7},
    {"u": "lon", "t": 120, "v": 24.30623},
    {"u": "lat", "t": 120, "v": 60.07966},
    {"u": "%EL", "t": 150, "v": 98},
    {"t": 180, "v": 21.2},
    {"u": "lon", "t": 180, "v": 24.30628},
    {"u": "lat", "t": 180, "v": 60.07967},
]
RESOLVED = [  # §5.1.4: the same, resolved
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067464e09, "v": 20},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067464e09, "v": 24.30621},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067464e09, "v": 60.07965},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067524e09, "v": 20.3},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067524e09, "v": 24.30622},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067524e09, "v": 60.07965},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067584e09, "v": 20.7},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067584e09, "v": 24.30623},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067584e09, "v": 60.07966},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%EL", "t": 1.320067614e09, "v": 98},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067644e09, "v": 21.2},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067644e09, "v": 24.30628},
    {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067644e09, "v": 60.07967},
]
DATA_TYPES = [  # §5.1.5
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
    {"n": "label", "vs": "Machine Room"},
    {"n": "open", "vb": False},
    {"n": "nfc-reader", "vd": "aGkgCg"},
]
COLLECTION = [  # §5.1.6
    {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
    {"n": "humidity", "u": "%RH", "v": 30},
    {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
    {"n": "humidity", "u": "%RH", "v": 67},
]
ACTUATOR = [  # §5.1.7
    {"bn": "urn:dev:ow:10e2073a01080063:"},
    {"n": "temp", "u": "Cel", "v": 23.1},
    {"n": "heat", "u": "/", "v": 1},
    {"n": "fan", "u": "/", "v": 0},
]
LIGHTS_OFF = [  # §5.1.8 (synchronised lights off)
    {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 0.5},
    {"n": "2001:db8::4", "v": 0.5},
    {"n": "2001:db8::3", "t": 0.1, "v": 0},
    {"n": "2001:db8::4", "t": 0.1, "v": 0},
]
# RFC 8428 §6: MULTIPLE_TIMED in CBOR, as the RFC prints it (195 bytes).
CBOR_HEX = (
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b001062"
    "23614120050067766f6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3f"
    "f3333333333333a3006763757272656e74062302fb3ff4cccccccccccda3006763757272656e74062202"
    "fb3ff6666666666666a3006763757272656e74062102f93e00a3006763757272656e74062002fb3ff999"
    "999999999aa3006763757272656e74060002fb3ffb333333333333"
)


def test_single_datapoint_finds_the_device_by_its_urn(catalogue: Catalogue) -> None:
    d = decode(catalogue, SINGLE)
    # the name is the device; Cel says which of its quantities; no time: arrival time
    assert by_time(d) == {("OW-1", None): {"temp": 23.1}}


def test_multiple_datapoints(catalogue: Catalogue) -> None:
    d = decode(catalogue, MULTIPLE)
    assert by_time(d) == {("OW-1", None): {"voltage": 120.1, "current": 1.2}}


def test_relative_times_and_base_unit_and_an_older_version(catalogue: Catalogue) -> None:
    d = decode(catalogue, MULTIPLE_TIMED)
    bt = 1.276020076001e09
    expected = {("OW-2", ns(bt)): {"voltage": 120.1, "current": 1.7}}
    for i, v in enumerate([1.2, 1.3, 1.4, 1.5, 1.6]):
        expected[("OW-2", ns(bt - 5 + i))] = {"current": v}
    assert by_time(d) == expected
    assert d.rejects == []


def test_a_name_prefix_never_captures_a_longer_registered_name(catalogue: Catalogue) -> None:
    # OW-2's name is a prefix of OW-1's: each finds its own device, no guessed separator
    d = decode(catalogue, [*MULTIPLE, {"bn": "", "n": "urn:dev:ow:10e2073a0108006:voltage",
                                       "v": 230.0}])  # fmt: skip
    assert by_time(d) == {
        ("OW-1", None): {"voltage": 120.1, "current": 1.2},
        ("OW-2", None): {"voltage": 230.0},
    }


def test_multiple_measurements_equal_the_rfcs_resolved_form(catalogue: Catalogue) -> None:
    d = decode(catalogue, MEASUREMENTS)
    quantity = {"%RH": "humidity", "lon": "lon", "lat": "lat", "%EL": "battery"}
    expected: dict[tuple[str | None, int | None], dict[str, Any]] = {}
    for r in RESOLVED:
        expected.setdefault(("OW-1", ns(r["t"])), {})[quantity[r["u"]]] = float(r["v"])
    assert by_time(d) == expected
    assert len(d.readings) == 5 and d.rejects == []


def test_multiple_data_types(catalogue: Catalogue) -> None:
    d = decode(catalogue, DATA_TYPES)
    # nfc-reader is no quantity of the type: passed on as sent, for unknown-key accounting
    assert by_time(d) == {
        ("OW-1", None): {"temp": 23.1, "label": "Machine Room", "open": False,
                         "nfc-reader": "aGkgCg"}
    }  # fmt: skip


def test_collection_of_resources_by_ipv6_names(catalogue: Catalogue) -> None:
    d = decode(catalogue, COLLECTION)
    t = ns(1.320078429e09)
    assert by_time(d) == {
        ("H-2", t): {"temperature": 25.2, "humidity": 30.0},
        ("H-1", t): {"temperature": 12.3, "humidity": 67.0},
    }


def test_setting_an_actuator_base_only_record(catalogue: Catalogue) -> None:
    d = decode(catalogue, ACTUATOR)
    assert by_time(d) == {("OW-1", None): {"temp": 23.1, "heat": 1.0, "fan": 0.0}}


def test_synchronised_lights_names_are_whole_ipv6_addresses(catalogue: Catalogue) -> None:
    d = decode(catalogue, LIGHTS_OFF)
    t = 1.320078429e09
    assert by_time(d) == {
        ("L-3", ns(t)): {"level": 0.5},
        ("L-4", ns(t)): {"level": 0.5},
        ("L-3", ns(t + 0.1)): {"level": 0.0},
        ("L-4", ns(t + 0.1)): {"level": 0.0},
    }


def test_cbor_of_section_6_is_the_json_example(catalogue: Catalogue) -> None:
    payload = bytes.fromhex(CBOR_HEX)
    assert len(payload) == 195
    # labels, values and the half-float 1.5 as the JSON says; the last record has t=0
    assert loads_cbor(payload) == [*MULTIPLE_TIMED[:-1], {"n": "current", "t": 0, "v": 1.7}]
    assert by_time(decode(catalogue, payload)) == by_time(decode(catalogue, MULTIPLE_TIMED))


def test_cbor_data_values_are_byte_strings(catalogue: Catalogue) -> None:
    pack = [{JSON_TO_CBOR[k]: v for k, v in r.items()} for r in DATA_TYPES]
    pack[3][JSON_TO_CBOR["vd"]] = b"hi \n"
    d = decode(catalogue, cbor2.dumps(pack))
    assert by_time(d)[("OW-1", None)]["nfc-reader"] == "aGkgCg"


# --- the platform's rules --------------------------------------------------------------


def test_fahrenheit_is_converted_to_the_catalogues_celsius(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"n": "temperature", "u": "Far", "v": 73.4}], publisher="WS-1")
    [reading] = d.readings
    assert reading.sensor_id == "WS-1"
    assert reading.values["temperature"] == pytest.approx(23.0)


def test_units_of_one_dimension_convert(catalogue: Catalogue) -> None:
    d = decode(
        catalogue,
        [{"bn": "WS-1/", "n": "pressure", "u": "Pa", "v": 101325},
         {"n": "wind_speed", "u": "km/h", "v": 36},
         {"n": "temperature", "u": "K", "v": 273.15}],
    )  # fmt: skip
    values = d.readings[0].values
    assert values == pytest.approx({"pressure": 1013.25, "wind_speed": 10.0, "temperature": 0.0})


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"n": "temperature", "u": "%RH", "v": 50}, "senml_unit_mismatch"),
        ({"n": "temperature", "u": "furlong", "v": 50}, "senml_unknown_unit"),
        ({"n": "temperature", "u": "MPa", "v": 50}, "senml_unknown_unit"),  # not registered
        ({"n": "temperature", "v": "hot"}, "bad_senml"),
        ({"n": "temperature", "vb": 1}, "bad_senml"),
        ({"n": "temperature", "vd": "not base64!"}, "bad_senml"),
        ({"n": "temperature", "v": 1, "vs": "x"}, "bad_senml"),
        ({"n": "temperature", "u": "Cel"}, "senml_no_value"),
        ({"n": "temperature", "v": 1, "t": 1e12}, "bad_timestamp"),
        ({"n": "temp erature", "v": 1}, "bad_senml"),
        ({"n": "-temperature", "v": 1}, "bad_senml"),
        ({"n": "urn:dev:ow:ffffffffffffffff:temp", "v": 1}, "unknown_sensor"),
        ({"n": "2001:db8::", "u": "Cel", "v": 1}, "unknown_sensor"),
        ({"n": "seq", "v": -1}, "bad_seq"),
        ({"n": "seq", "v": 1.5}, "bad_seq"),
    ],
)
def test_a_bad_record_refuses_its_reading_only(
    catalogue: Catalogue, record: dict[str, Any], reason: str
) -> None:
    d = decode(catalogue, [record, {"n": "humidity", "v": 60, "t": -60}], publisher="WS-1")
    assert reasons(d) == [reason]
    assert [r.values for r in d.readings] == [{"humidity": 60.0}]


def test_an_unregistered_urn_is_never_read_as_a_short_id(catalogue: Catalogue) -> None:
    # once split at its last colon, this became sensor "ow"
    d = decode(catalogue, [{"n": "urn:dev:ow:WS-1", "u": "Cel", "v": 20}], publisher="WS-1")
    assert reasons(d) == ["unknown_sensor"] and d.readings == []


def test_mac_urn_and_its_quantities(catalogue: Catalogue) -> None:
    d = decode(
        catalogue,
        [{"bn": "urn:dev:mac:0024befffe804ff1/", "bt": NOW_S - 60, "n": "temperature",
          "u": "Cel", "v": 21.5}, {"n": "humidity", "u": "%RH", "v": 40}],
    )  # fmt: skip
    assert by_time(d) == {("MAC-1", (NOW_S - 60) * 10**9): {"temperature": 21.5, "humidity": 40.0}}


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        ([{"bver": 11, "n": "temperature", "v": 1}], "senml_version"),
        ([{"bver": "10", "n": "temperature", "v": 1}], "bad_senml"),
        ([{"bver": 0, "n": "temperature", "v": 1}], "bad_senml"),
        ([{"n": "temperature", "v": 1}, {"n": "humidity", "v": 2, "ex_": 1}],
         "senml_must_understand"),
        ([{"bn": 7, "n": "temperature", "v": 1}], "bad_senml"),
        ([{"bt": "yesterday", "n": "temperature", "v": 1}], "bad_senml"),
        ([{"bv": True, "n": "temperature", "v": 1}], "bad_senml"),
    ],
)  # fmt: skip
def test_a_bad_pack_is_refused_whole(catalogue: Catalogue, pack: list[Any], reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        decode(catalogue, pack, publisher="WS-1")
    assert err.value.reason == reason


def test_unknown_labels_are_ignored_as_the_rfc_requires(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"n": "temperature", "v": 20, "x": "extension"}], publisher="WS-1")
    assert [r.values for r in d.readings] == [{"temperature": 20.0}]


def test_base_value_and_base_sum(catalogue: Catalogue) -> None:
    d = decode(
        catalogue,
        [{"bn": "WS-1/", "bv": 20, "bs": 10, "n": "temperature", "v": 1.5},
         {"n": "rain", "s": 2},
         {"n": "humidity", "v": 40, "s": 5, "t": NOW_S}],
    )  # fmt: skip
    got = by_time(d)
    # a Sum alone is the quantity's value; beside a value it is <quantity>_sum
    assert got[("WS-1", None)] == {"temperature": 21.5, "rain": 12.0}
    assert got[("WS-1", NOW_NS)] == {"humidity": 60.0, "humidity_sum": 15.0}


def test_relative_time_is_relative_to_arrival(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"n": "temperature", "v": 20, "t": -10}], publisher="WS-1")
    assert d.readings[0].ts_ns == NOW_NS - 10 * 10**9
    # 2**28 s is the line between relative and absolute (§4.5.3)
    d = decode(catalogue, [{"n": "temperature", "v": 20, "t": 2**28 - 1}], publisher="WS-1")
    assert d.readings[0].ts_ns == NOW_NS + (2**28 - 1) * 10**9
    d = decode(catalogue, [{"n": "temperature", "v": 20, "t": 2**28}], publisher="WS-1")
    assert d.readings[0].ts_ns == 2**28 * 10**9


def test_seq_record_is_the_readings_sequence_number(catalogue: Catalogue) -> None:
    d = decode(
        catalogue,
        [{"bn": "WS-1/", "bt": NOW_S, "n": "seq", "v": 41}, {"n": "temperature", "v": 20},
         {"n": "seq", "t": 60, "v": 42}, {"n": "temperature", "t": 60, "v": 21}],
    )  # fmt: skip
    assert [(r.seq, r.values) for r in d.readings] == [
        (41, {"temperature": 20.0}),
        (42, {"temperature": 21.0}),
    ]


def test_a_repeated_quantity_at_one_time_is_refused(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"n": "temperature", "v": 20}, {"n": "temperature", "v": 21}],
               publisher="WS-1")  # fmt: skip
    assert reasons(d) == ["duplicate_key"]
    assert d.readings == []  # stored whole or refused whole


def test_a_refused_reading_keeps_its_seq_for_the_accounting(catalogue: Catalogue) -> None:
    d = decode(
        catalogue,
        [{"bn": "WS-1/", "n": "temperature", "u": "%RH", "v": 20}, {"n": "seq", "v": 9},
         {"n": "humidity", "v": 50}],
    )  # fmt: skip
    assert [(r.sensor_id, r.seq, r.error.reason) for r in d.rejects] == [
        ("WS-1", 9, "senml_unit_mismatch")
    ]
    assert d.readings == []


def test_a_seq_without_values_is_no_reading(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"bn": "WS-1/", "n": "seq", "v": 9}])
    assert [(r.seq, r.error.reason) for r in d.rejects] == [(9, "no_values")]


def test_a_device_name_with_two_candidates_by_unit_is_refused(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"n": "urn:dev:ow:10e2073a01080063", "u": "/", "v": 1}])
    assert reasons(d) == ["senml_no_quantity"]  # heat or fan?


@pytest.mark.parametrize(
    "payload",
    [
        b"\x9f\xff\xff",  # indefinite array, then junk
        b"\x81\xa1\x02",  # truncated
        b"\x81" * 100_000,  # nested deeper than any stack
        b"\x82\xa1\x00\x61x\x01",  # second item not a map
        cbor2.dumps([{"v": 1.0, "n": "temperature"}]),  # string labels for defined fields
        cbor2.dumps([{True: 1}]),
        cbor2.dumps([{2: 1.0, 0: "temperature", 8: "not bytes"}]),
        cbor2.dumps([{2: 10**400, 0: "temperature"}]),  # a bignum past any float
    ],
)
def test_hostile_cbor_is_a_clear_refusal(catalogue: Catalogue, payload: bytes) -> None:
    try:
        d = decode(catalogue, payload, publisher="WS-1")
    except PayloadError as exc:
        assert exc.reason in {"invalid_cbor", "bad_senml"}
    else:
        assert d.readings == [] and reasons(d) and set(reasons(d)) <= {"bad_senml"}


def test_cbor_nan_reaches_validation_as_not_finite(catalogue: Catalogue) -> None:
    d = decode(catalogue, cbor2.dumps([{0: "temperature", 2: math.nan}]), publisher="WS-1")
    assert math.isnan(d.readings[0].values["temperature"])  # validation refuses not_finite


def test_without_a_registry_context_senml_is_refused() -> None:
    with pytest.raises(PayloadError) as err:
        decode_payload(orjson.dumps(SINGLE))
    assert err.value.reason == "bad_shape"


def test_resolve_pack_keeps_the_rfcs_resolved_names_and_units() -> None:
    pack = resolve_pack(MEASUREMENTS, NOW_NS)
    got = [(r.name, r.unit, r.time_ns, r.value) for r in pack.records]
    assert got == [(r["n"], r["u"], ns(r["t"]), pytest.approx(float(r["v"]))) for r in RESOLVED]


def test_a_pack_may_open_with_base_fields_only(catalogue: Catalogue) -> None:
    d = decode(catalogue, [{"bver": 10, "bu": "Cel"}, {"n": "temperature", "v": 20}],
               publisher="WS-1")  # fmt: skip
    assert [r.values for r in d.readings] == [{"temperature": 20.0}]
