"""Payload codecs: CayenneLPP against myDevices' published examples, the declarative
fixed layout, the catalogue's codec declarations checked at load, the key map, and what
an uplink becomes once its device's type is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sensornet.catalogue import load_catalogue
from sensornet.errors import CatalogueError, PayloadError
from sensornet.lorawan.cayenne import decode_lpp
from sensornet.lorawan.envelope import Uplink
from sensornet.lorawan.keymap import load_keymap
from sensornet.lorawan.values import radio_health, uplink_values

CATALOGUE = Path(__file__).parent.parent / "sensornet" / "data" / "catalogue.yaml"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        # cayenne-docs LORA.md, "Device with 2 temperature sensors"
        ("03 67 01 10 05 67 00 FF", {"temperature_3": 27.2, "temperature_5": 25.5}),
        # "Device with temperature and acceleration sensors"
        ("01 67 FF D7 06 71 04 D2 FB 2E 00 00",
         {"temperature_1": -4.1, "accelerometer_6_x": 1.234, "accelerometer_6_y": -1.234,
          "accelerometer_6_z": 0.0}),
        # "Device with GPS"
        ("01 88 06 76 5F F2 96 0A 00 03 E8",
         {"gps_1_latitude": 42.3519, "gps_1_longitude": -87.9094, "gps_1_altitude": 10.0}),
        ("02 68 61 03 73 27 6F 04 02 01 5E 05 00 01",
         {"relative_humidity_2": 48.5, "barometric_pressure_3": 1009.5, "analog_in_4": 3.5,
          "digital_in_5": 1.0}),
    ],
)  # fmt: skip
def test_cayenne_published_examples(frame: str, expected: dict[str, float]) -> None:
    assert decode_lpp(bytes.fromhex(frame)) == expected


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("", "empty"),
        ("03", "inside a header"),
        ("03 67 01", "needs 2 bytes"),
        ("03 FF 01 10", "unknown type 255"),
        ("03 67 01 10 03 67 00 01", "temperature_3 appears twice"),
    ],
)
def test_cayenne_refuses_rather_than_half_decodes(frame: str, says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_lpp(bytes.fromhex(frame))
    assert caught.value.reason == "codec_error" and says in caught.value.detail


def test_catalogue_layouts_decode_their_fields() -> None:
    types = load_catalogue().types
    assert types["waterlogging"].codec is not None
    assert types["waterlogging"].codec.decode(bytes([0x00, 0x7B, 150])) == {
        "depth": 12.3, "battery_v": 3.0}  # fmt: skip
    assert types["parking"].codec is not None  # little-endian mV after a skipped byte
    assert types["parking"].codec.decode(bytes([1, 0xAA, 0xE4, 0x0C])) == {
        "occupied": True, "battery_v": 3.3}  # fmt: skip
    assert types["manhole_cover"].codec is not None
    assert types["manhole_cover"].codec.decode(bytes([0x01, 0x2C, 0, 140])) == {
        "tilt": 3.0, "open": False, "battery_v": 2.8}  # fmt: skip
    with pytest.raises(PayloadError, match="payload of 4 bytes, the layout has 3"):
        types["waterlogging"].codec.decode(b"\x00\x01\x02\x03")


def test_signed_layouts(tmp_path: Path) -> None:
    doc = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    structural = next(t for t in doc["types"] if t["id"] == "structural")
    structural["codec"] = {"kind": "layout", "fields": [
        {"key": "tilt", "width": 2, "signed": True, "endian": "little", "scale": 0.001},
        {"key": "vibration", "width": 3, "scale": 0.01}]}  # fmt: skip
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    codec = load_catalogue(path).types["structural"].codec
    assert codec is not None
    assert codec.decode(bytes([0x18, 0xFC, 0x00, 0x00, 0x2A])) == {
        "tilt": -1.0, "vibration": 0.42}  # fmt: skip


@pytest.mark.parametrize(
    ("codec", "says"),
    [
        ({"kind": "protobuf"}, "codec kind 'protobuf' must be cayenne_lpp or layout"),
        ({"kind": "cayenne_lpp", "channels": 3}, "unknown key(s) channels"),
        ({"kind": "layout"}, "fields must be a non-empty list"),
        ({"kind": "layout", "fields": [{"key": "depth", "width": 5}]}, "width must be one of"),
        ({"kind": "layout", "fields": [{"key": "depth", "width": 2, "endian": "middle"}]},
         "endian must be big or little"),
        ({"kind": "layout", "fields": [{"key": "depth", "width": 2, "scale": 0}]},
         "scale must be a finite non-zero number"),
        ({"kind": "layout", "fields": [{"key": "depth", "width": 2, "sign": True}]},
         "unknown key(s) sign"),
        ({"kind": "layout", "fields": [{"key": "d", "width": 1}, {"key": "d", "width": 1}]},
         "a key appears twice"),
        ({"kind": "layout", "fields": [{"skip": 2}]}, "must read at least one key"),
    ],
)  # fmt: skip
def test_codec_typos_fail_at_load_naming_the_type(
    tmp_path: Path, codec: dict[str, Any], says: str
) -> None:
    doc = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    next(t for t in doc["types"] if t["id"] == "waterlogging")["codec"] = codec
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    assert "type 'waterlogging'" in str(caught.value) and says in str(caught.value)


def uplink(**over: Any) -> Uplink:
    base: dict[str, Any] = {"network": "tts", "dev_eui": "0004A30B001C0530",
                            "application": "app1", "received_ns": 1, "f_cnt": 7,
                            "f_port": 2, "data": b"", "decoded": None, "gateways": 2,
                            "rssi": -80.0, "snr": 7.5}  # fmt: skip
    return Uplink(**{**base, **over})


def test_values_from_the_network_servers_decoding_and_the_key_map() -> None:
    weather = load_catalogue().types["weather"]
    decoded = {"temperature_c": 21.5, "humidity_pct": 60, "battery_v": 3.62, "fw": "1.2"}
    out = uplink_values(uplink(decoded=decoded), weather, load_keymap())
    assert out.readings == {"temperature": 21.5, "humidity": 60, "fw": "1.2"}
    assert out.health == {"battery_v": 3.62}
    assert radio_health(uplink()) == {"f_cnt": 7, "gateways": 2, "rssi": -80.0, "snr": 7.5,
                                      "f_port": 2}  # fmt: skip


def test_values_from_raw_bytes_by_the_types_codec() -> None:
    types = load_catalogue().types
    lpp = bytes.fromhex("0167 00D7 0268 78 0373 2779".replace(" ", ""))
    out = uplink_values(uplink(data=lpp), types["weather"], load_keymap())
    assert out.readings == {"temperature": 21.5, "humidity": 60.0, "pressure": 1010.5}
    out = uplink_values(uplink(data=bytes([0, 0x7B, 150])), types["waterlogging"], load_keymap())
    assert out.readings == {"depth": 12.3} and out.health == {"battery_v": 3.0}


def test_no_codec_and_no_payload_are_refusals_with_reasons() -> None:
    noise = load_catalogue().types["noise"]
    with pytest.raises(PayloadError) as caught:
        uplink_values(uplink(data=b"\x01\x02"), noise, load_keymap())
    assert caught.value.reason == "no_codec"
    assert "2 raw bytes on fPort 2" in caught.value.detail
    with pytest.raises(PayloadError) as caught:
        uplink_values(uplink(), noise, load_keymap())
    assert caught.value.reason == "no_values"


def test_key_map_is_checked_against_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("version: 1\ntypes:\n  weather:\n    temp: temprature\n")
    with pytest.raises(CatalogueError, match="'temp' maps to 'temprature'"):
        load_keymap(path)
    path.write_text("version: 1\ntypes:\n  teapot: {a: b}\n")
    with pytest.raises(CatalogueError, match="'teapot' is not a catalogue type"):
        load_keymap(path)
    path.write_text("version: 1\napplications:\n  app7: {t: temperature, fw: null}\n")
    keymap = load_keymap(path)
    assert keymap.split({"t": 1, "fw": "x", "z": {"a": 2}}, "weather", "app7") == (
        {"temperature": 1, "z_a": 2}, {})  # fmt: skip
