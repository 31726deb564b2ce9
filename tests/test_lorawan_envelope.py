"""LoRaWAN envelopes as ChirpStack v4 and The Things Stack v3 publish them: their own
documented examples, then hostile variants (wrong types, missing ids, a topic and body
that disagree, oversize, a concentrator counter in place of a time)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensornet.errors import PayloadError
from sensornet.lorawan.envelope import parse_topic, parse_uplink
from sensornet.timestamps import rfc3339_to_ns

DATA = Path(__file__).parent / "data" / "lorawan"
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
TTS_TOPIC = "v3/app1@tenant1/devices/dev1/up"


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / name).read_text())
    return doc


def dump(doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_chirpstack_documented_uplink() -> None:
    raw = (DATA / "chirpstack_up.json").read_bytes()
    up = parse_uplink(raw, "chirpstack", 64 * 1024, CS_TOPIC)
    assert up.dev_eui == "0101010101010101"
    assert up.application == "17c82e96-be03-4f38-aef3-f83d48582d97"
    # the network server's time, to the nanosecond, not a gateway counter
    assert up.received_ns == rfc3339_to_ns("2022-07-18T09:34:15.775023242+00:00")
    assert up.received_ns % 10**9 == 775023242
    assert up.f_cnt == 0  # omitted in the example: the proto3 JSON mapping omits zeros
    assert up.f_port == 1
    assert up.data == b"\xaa"
    assert up.decoded is None  # no "object": no codec ran at the network server
    assert (up.gateways, up.rssi, up.snr) == (1, -36.0, 10.5)
    assert up.uplink_id == "3ac7e3c4-4401-4b8d-9386-a5c902f9202d"
    assert not up.simulated
    # the HTTP integration posts the same body, no topic
    assert parse_uplink(raw, "chirpstack", 64 * 1024) == up


def test_chirpstack_documented_status_is_health() -> None:
    raw = (DATA / "chirpstack_status.json").read_bytes()
    topic = CS_TOPIC.replace("/up", "/status")
    up = parse_uplink(raw, "chirpstack", 64 * 1024, topic)
    assert up.extra == {"margin": 10.0, "battery_pct": 88.3, "external_power": False}
    assert up.data == b"" and up.decoded is None


def test_tts_documented_uplink() -> None:
    raw = (DATA / "tts_up.json").read_bytes()
    up = parse_uplink(raw, "tts", 64 * 1024, TTS_TOPIC)
    assert up.dev_eui == "0004A30B001C0530"
    assert up.application == "app1" and up.device_name == "dev1"
    # uplink_message.received_at (the Network Server), not rx_metadata[].timestamp
    assert up.received_ns == rfc3339_to_ns("2020-02-12T15:15:45.789585559Z")
    assert up.f_cnt == 1 and up.f_port is None  # f_port omitted in the example
    assert up.data == base64.b64decode("gkHe")
    assert up.decoded == {"temperature": 1.0, "luminosity": 0.64}
    assert (up.gateways, up.rssi, up.snr) == (1, -35.0, 5.0)
    assert up.uplink_id == "as:up:01E0WZGT6Y7657CPFPE5WEYDSQ"
    assert parse_uplink(raw, "tts", 64 * 1024) == up  # the webhook's body
    # single-tenant deployments publish without "@tenant"
    assert parse_uplink(raw, "tts", 64 * 1024, "v3/app1/devices/dev1/up") == up


def test_tts_simulated_flag_and_best_of_several_gateways() -> None:
    doc = example("tts_up.json")
    doc["simulated"] = True
    second = dict(doc["uplink_message"]["rx_metadata"][0], rssi=-20, snr=-3.5)
    doc["uplink_message"]["rx_metadata"].append(second)
    up = parse_uplink(dump(doc), "tts", 64 * 1024, TTS_TOPIC)
    assert up.simulated
    assert (up.gateways, up.rssi, up.snr) == (2, -20.0, 5.0)


def test_topics() -> None:
    cs = parse_topic(CS_TOPIC)
    assert cs is not None and (cs.network, cs.device, cs.event) == (
        "chirpstack", "0101010101010101", "up")  # fmt: skip
    tts = parse_topic("v3/app1@tenant1/devices/dev1/down/queued")
    assert tts is not None and (tts.application, tts.device, tts.event) == (
        "app1", "dev1", "down/queued")  # fmt: skip
    assert parse_topic("city/v1/AQ-1/readings") is None
    assert parse_topic("application/x/device/y/command/down") is None


def refused(payload: bytes, network: str = "chirpstack", topic: str = CS_TOPIC,
            max_bytes: int = 64 * 1024) -> str:  # fmt: skip
    with pytest.raises(PayloadError) as caught:
        parse_uplink(payload, network, max_bytes, topic)  # type: ignore[arg-type]
    return caught.value.reason


def cs_with(**changes: Any) -> bytes:
    doc = example("chirpstack_up.json")
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for p in parents:
            target = target[p]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return dump(doc)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"deviceInfo__devEui": ...}, "bad_envelope"),  # missing id
        ({"deviceInfo__devEui": ""}, "bad_envelope"),
        ({"deviceInfo__devEui": 257}, "bad_envelope"),  # wrong type
        ({"deviceInfo__devEui": "01010101"}, "bad_dev_eui"),
        ({"deviceInfo": ...}, "bad_envelope"),
        ({"deviceInfo": []}, "bad_envelope"),
        ({"deviceInfo__devEui": "0202020202020202"}, "topic_mismatch"),  # body vs topic
        ({"deviceInfo__applicationId": "another-app"}, "topic_mismatch"),
        ({"time": ...}, "bad_timestamp"),  # receipt time missing: no counter stands in
        ({"time": 2463457000}, "bad_timestamp"),  # a concentrator counter is not a time
        ({"time": "yesterday"}, "bad_timestamp"),
        ({"fCnt": -1}, "bad_envelope"),
        ({"fCnt": 2**32}, "bad_envelope"),
        ({"fCnt": "seven"}, "bad_envelope"),
        ({"fCnt": True}, "bad_envelope"),
        ({"fPort": 256}, "bad_envelope"),
        ({"data": "not base64!"}, "bad_envelope"),
        ({"data": 170}, "bad_envelope"),
        ({"object": [1, 2]}, "bad_envelope"),
        ({"object": {f"k{i}": i for i in range(300)}}, "too_many"),
        ({"rxInfo": "gateway"}, "bad_envelope"),
    ],
)
def test_hostile_chirpstack(changes: dict[str, Any], reason: str) -> None:
    assert refused(cs_with(**changes)) == reason


def test_hostile_shapes_and_sizes() -> None:
    assert refused(b"[1, 2]") == "bad_envelope"
    assert refused(b"{not json") == "invalid_json"
    assert refused(b"\xff\xfe{\x00}\x00") == "invalid_utf8"
    big = cs_with(object={"k": "x" * 70_000})
    assert refused(big) == "oversize"
    deep: Any = 1
    for _ in range(12):
        deep = {"a": deep}
    assert refused(cs_with(object=deep)) == "too_deep"
    # a topic of another network, or a downlink-side event
    assert refused(b"{}", "chirpstack", TTS_TOPIC) == "bad_topic"
    assert refused(b"{}", "chirpstack", CS_TOPIC.replace("/up", "/join")) == "not_an_uplink"
    assert refused(b"{}", "tts", "v3/app1/devices/dev1/join") == "not_an_uplink"


def test_bom_is_tolerated() -> None:
    raw = b"\xef\xbb\xbf" + (DATA / "chirpstack_up.json").read_bytes()
    assert parse_uplink(raw, "chirpstack", 64 * 1024, CS_TOPIC).dev_eui == "0101010101010101"


def tts_with(mutate: Any) -> bytes:
    doc = example("tts_up.json")
    mutate(doc)
    return dump(doc)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["end_device_ids"].pop("dev_eui"), "bad_envelope"),
        (lambda d: d.pop("end_device_ids"), "bad_envelope"),
        (lambda d: d["end_device_ids"].update(dev_eui="XYZ"), "bad_dev_eui"),
        (lambda d: d["end_device_ids"].update(device_id="dev2"), "topic_mismatch"),
        (
            lambda d: d["end_device_ids"]["application_ids"].update(application_id="app2"),
            "topic_mismatch",
        ),
        (lambda d: d.pop("uplink_message"), "not_an_uplink"),
        (lambda d: d["uplink_message"].update(f_cnt=1.5), "bad_envelope"),
        (lambda d: d["uplink_message"].update(f_cnt=[1]), "bad_envelope"),
        (lambda d: d["uplink_message"].update(frm_payload="%%%"), "bad_envelope"),
        (lambda d: d["uplink_message"].update(decoded_payload="21.5"), "bad_envelope"),
        (lambda d: d.update(simulated="yes"), "bad_envelope"),
        (
            lambda d: (d["uplink_message"].pop("received_at"), d.pop("received_at")),
            "bad_timestamp",
        ),
    ],
)
def test_hostile_tts(mutate: Any, reason: str) -> None:
    assert refused(tts_with(mutate), "tts", TTS_TOPIC) == reason


def test_tts_falls_back_to_the_application_servers_receipt() -> None:
    doc = example("tts_up.json")
    del doc["uplink_message"]["received_at"]
    up = parse_uplink(dump(doc), "tts", 64 * 1024, TTS_TOPIC)
    assert up.received_ns == rfc3339_to_ns("2020-02-12T15:15:46.014773143Z")


def test_replayed_uplink_parses_to_the_same_record() -> None:
    """A redelivery is the same uplink: same DevEUI, fCnt and receipt time, so the
    reading it makes overwrites itself (same series, same timestamp)."""
    raw = (DATA / "tts_up.json").read_bytes()
    again = copy.deepcopy(example("tts_up.json"))
    assert parse_uplink(raw, "tts", 64 * 1024) == parse_uplink(dump(again), "tts", 64 * 1024)
