"""The fast lane must answer exactly as the general path (codec → validation → line
protocol) does, or step aside: a differential test over generated messages, most of them
well formed, many of them subtly not."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from value_strategies import good_value, mostly

from ingest.pipeline import BatchResult, Pipeline
from sensornet.catalogue import load_catalogue
from sensornet.mqtt_wire import InboundMessage
from sensornet.registry.store import DeviceInfo

NOW_NS = time.time_ns()
NOW_S = NOW_NS // 10**9
DEVICES = {
    d.id: d
    for d in [
        DeviceInfo("AQ-1", "air_quality", "jingansi", 31.2, 121.4, "active", "GW-1"),
        DeviceInfo("AQ-2", "air_quality", "beizhan", 31.2, 121.4, "active", "GW-2"),
        DeviceInfo("TF-1", "traffic_flow", "beizhan", 31.2, 121.4, "active", "GW-1"),
        DeviceInfo("SL-1", "street_light", "beizhan", 31.2, 121.4, "active", "GW-1"),
        DeviceInfo("MH-1", "manhole_cover", "beizhan", 31.2, 121.4, "active", "GW-1"),
        DeviceInfo("RT-1", "air_quality", "beizhan", 31.2, 121.4, "retired", "GW-1"),
        DeviceInfo("GW-1", "weather", "beizhan", 31.2, 121.4, "active"),
    ]
}
SENSORS = [*DEVICES, "NOPE-1"]
CATALOGUE = load_catalogue()
QUANTITIES = sorted({q for t in CATALOGUE.types.values() for q in t.quantities})


def pipelines() -> tuple[Pipeline, Pipeline]:
    args = (CATALOGUE, DEVICES.get, "city/v1")
    return Pipeline(*args, max_payload_bytes=4096), Pipeline(
        *args, max_payload_bytes=4096, use_fast_lane=False
    )


def outcome(result: BatchResult) -> tuple[Any, ...]:
    rejects = [(r.device_id, r.reason, r.seq, r.payload) for r in result.rejects]
    return result.lines, result.stored, rejects, result.status, result.unknown_keys


hostile_values = st.one_of(
    st.floats(),
    st.integers(),
    st.booleans(),
    st.sampled_from(["auto", "disco", "1:2", ""]),
    st.none(),
    st.just({"nested": 1.0}),
    st.just([1.0]),
)


good_timestamps = st.one_of(
    st.none(),
    st.integers(NOW_S - 100, NOW_S + 100),
    st.integers((NOW_S - 100) * 1000, (NOW_S + 100) * 1000),
)
bad_timestamps = st.one_of(
    st.integers(NOW_S * 10**6 - 10, NOW_S * 10**6 + 10),
    st.integers(-5, 10**19),
    st.integers((NOW_S + 290) * 1000, (NOW_S + 310) * 1000),
    st.floats(NOW_S - 100, NOW_S + 100),
    st.just("2026-11-25T10:00:00+08:00"),
    st.booleans(),
)
good_seqs = st.one_of(st.none(), st.integers(0, 10**6))
bad_seqs = st.one_of(st.integers(), st.just("7"), st.booleans())


@st.composite
def reading(draw: st.DrawFn, sensor: str, in_pack: bool, clean: bool) -> dict[str, Any]:
    device = DEVICES.get(sensor)
    quantities = CATALOGUE.get(device.type if device else "air_quality").quantities
    keys = draw(st.lists(st.sampled_from(list(quantities)), min_size=1, max_size=4, unique=True))
    extra = st.lists(st.sampled_from([*QUANTITIES, "time", "values"]))
    keys += draw(mostly(st.just([]), extra, clean))
    item: dict[str, Any] = {}
    if in_pack and draw(mostly(st.just(True), st.booleans(), clean)):
        item["sensor"] = sensor
    for key in keys:
        good = good_value(quantities[key]) if key in quantities else hostile_values
        item[key] = draw(mostly(good, hostile_values, clean))
    if (ts := draw(mostly(good_timestamps, bad_timestamps, clean))) is not None:
        item["ts"] = ts
    if (seq := draw(mostly(good_seqs, bad_seqs, clean))) is not None:
        item["seq"] = seq
    return item


def encode(doc: Any, duplicate: bool) -> bytes:
    raw = json.dumps(doc).encode()  # big integers and Infinity too, unlike orjson
    if duplicate and raw.startswith(b'{"'):  # repeat the first key: orjson cannot write it
        key = raw[1 : raw.index(b":") + 1]
        raw = b"{" + key + b"1.0," + raw[1:]
    return raw


@st.composite
def message(draw: st.DrawFn) -> InboundMessage:
    clean = draw(st.booleans())
    duplicate = not clean and draw(st.integers(0, 4)) == 0
    shape = draw(st.sampled_from(["pack", "single", "array"]))
    if shape == "pack":
        gateway = draw(mostly(st.just("GW-1"), st.sampled_from(["GW-2", "AQ-1"]), clean))
        on_gateway = [s for s, d in DEVICES.items() if d.gateway_id == "GW-1"] + ["GW-1"]
        sensors = mostly(st.sampled_from(on_gateway), st.sampled_from(SENSORS), clean)
        items = draw(st.lists(sensors.flatmap(lambda s: reading(s, True, clean)), max_size=5))
        doc: Any = {"gw": gateway, "readings": items}
        if not clean and draw(st.integers(0, 9)) == 0:
            doc["ts"] = NOW_S
        topic = f"city/v1/{gateway}/pack"
    else:
        good_sensors = st.sampled_from(["AQ-1", "TF-1", "SL-1"])
        sensor = draw(mostly(good_sensors, st.sampled_from(SENSORS), clean))
        if shape == "array":  # one sensor's batch, as HTTP pushes carry
            doc = draw(st.lists(reading(sensor, False, clean), max_size=5))
        else:
            doc = draw(reading(sensor, False, clean))
        topic = f"city/v1/{sensor}/readings"
    payload = encode(doc, duplicate)
    return InboundMessage(topic, payload, 1, None, NOW_NS - 1000)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message(), min_size=1, max_size=4))
def test_fast_lane_answers_as_the_general_path(messages: list[InboundMessage]) -> None:
    fast, general = pipelines()
    assert outcome(fast.process(messages, NOW_NS)) == outcome(general.process(messages, NOW_NS))


def well_formed() -> list[InboundMessage]:
    pack = {
        "gw": "GW-1",
        "readings": [
            {"sensor": "AQ-1", "ts": NOW_S * 1000, "seq": 3, "pm25": 12.5, "pm10": 40},
            {"sensor": "TF-1", "ts": NOW_S, "count": 12, "mean_speed": 31.0},
            {"sensor": "SL-1", "power": 80.0, "on": True, "mode": "auto"},
            {"sensor": "MH-1", "seq": 9, "tilt": 0.5, "open": False},
        ],
    }
    single = {"ts": NOW_S * 1000, "seq": 1, "pm25": 3.25}
    array = [{"ts": NOW_S - 1, "seq": 7, "count": 3}, {"seq": 8, "count": 4, "mean_speed": 9.5}]
    return [
        InboundMessage("city/v1/GW-1/pack", orjson.dumps(pack), 1, None, NOW_NS),
        InboundMessage("city/v1/AQ-1/readings", orjson.dumps(single), 2, None, NOW_NS),
        InboundMessage("city/v1/TF-1/readings", orjson.dumps(array), 3, None, NOW_NS),
    ]


def test_well_formed_messages_take_the_fast_lane() -> None:
    """Fails if the lane silently steps aside for the shapes sensors really send."""
    fast, general = pipelines()
    lane = fast._fast
    pack, single, array = well_formed()
    assert lane.pack(pack.payload, "GW-1", NOW_NS, NOW_NS, BatchResult())
    assert lane.readings(single.payload, "AQ-1", NOW_NS, NOW_NS, BatchResult())
    assert lane.readings(array.payload, "TF-1", NOW_NS, NOW_NS, BatchResult())
    result = fast.process([pack, single, array], NOW_NS)
    assert outcome(result) == outcome(general.process([pack, single, array], NOW_NS))
    assert len(result.lines) == 7 and not result.rejects
    assert (
        result.lines[4]
        == f"air_quality,sensor_id=AQ-1,subdistrict=jingansi pm25=3.25,seq=1i {NOW_S * 10**9}"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b'{"pm25": 1.0, "pm25": 2.0}',
        b'{"pm25": 1.0, "seq": 1, "seq": 2}',
        b'{"pm25": 1e999}',
        b'{"pm25": 1.0, "x": "\xff"}',
    ],
)
def test_doubtful_messages_step_aside(payload: bytes) -> None:
    fast, _ = pipelines()
    out = BatchResult()
    assert not fast._fast.readings(payload, "AQ-1", NOW_NS, NOW_NS, out)
    assert not out.lines and not out.stored


def test_keys_the_type_does_not_know_stay_on_the_fast_lane_and_are_counted() -> None:
    """A firmware update that adds ``rssi`` and ``fw`` must not push a fleet off the lane."""
    fast, general = pipelines()
    payload = b'{"ts": %d, "seq": 4, "pm25": 3.0, "rssi": -71, "fw": "1.4"}' % NOW_S
    assert fast._fast.readings(payload, "AQ-1", NOW_NS, NOW_NS, BatchResult())
    message = InboundMessage("city/v1/AQ-1/readings", payload, 1, None, NOW_NS)
    result = fast.process([message, message], NOW_NS)
    assert outcome(result) == outcome(general.process([message, message], NOW_NS))
    assert result.unknown_keys == {("AQ-1", "rssi"): 2, ("AQ-1", "fw"): 2}
    assert result.lines[0].endswith(f"pm25=3.0,seq=4i {NOW_S * 10**9}")
