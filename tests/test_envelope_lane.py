"""The envelope lane must answer exactly as the general path (envelope parser → codec and
key map → validation → line protocol, health beside) does, or step aside: a differential
test over generated ChirpStack v4 and The Things Stack v3 envelopes, most of them well
formed, many of them subtly not (fields missing or of another type, topics that disagree,
simulated uplinks, raw bytes that do not fit, nesting, names the key map renames, drops or
keeps as health)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from value_strategies import good_value, mostly

from gateway_sim.lorawan import SIM_APPLICATION, encode_values, rfc3339, uplink
from ingest import pipeline as pipeline_module
from ingest.pipeline import BatchResult, Pipeline
from sensornet.catalogue import load_catalogue
from sensornet.lorawan import formats as lorawan_formats
from sensornet.lorawan.keymap import KeyMap, load_keymap
from sensornet.mqtt_wire import InboundMessage
from sensornet.registry.store import DeviceInfo

NOW_NS = time.time_ns()
CATALOGUE = load_catalogue()
PACKAGED = load_keymap()
TTS_APP = "sensornet-sim"
# The packaged map, and one fleet's own decoder naming its keys its way (an application
# map: a rename, a key dropped on purpose, battery as health) for both networks' ids.
APP_KEYS: dict[str, str | None] = {"pm2.5": "pm25", "junk": None, "bat": "battery_v",
                                   "water": "depth", "temp": "temperature"}  # fmt: skip
KEYMAP = KeyMap(PACKAGED.health, PACKAGED.types, {SIM_APPLICATION: APP_KEYS, TTS_APP: APP_KEYS})


def device(sensor_id: str, type_id: str, eui: str, status: str = "active") -> DeviceInfo:
    return DeviceInfo(sensor_id, type_id, "beizhan", 31.2, 121.4, status, None, eui)


DEVICES = [
    device("AQ-1", "air_quality", "70B3D57ED0000001"),  # decoded by the network server
    device("WL-1", "waterlogging", "70B3D57ED0000002"),  # fixed layout (depth, battery)
    device("WS-1", "weather", "70B3D57ED0000003"),  # CayenneLPP, keys renamed by type
    device("SL-1", "street_light", "70B3D57ED0000004"),  # a free-text-free string, a bool
    device("MH-1", "manhole_cover", "70B3D57ED0000005"),  # a layout with a bool
    device("TF-1", "traffic_flow", "70B3D57ED0000006"),  # an integer quantity
    device("RT-1", "air_quality", "70B3D57ED0000007", "retired"),
]
BY_EUI = {d.dev_eui: d for d in DEVICES}
BY_ID = {d.id: d for d in DEVICES}
UNREGISTERED = "70B3D57ED00000FF"


@pytest.fixture(autouse=True)
def app_keymap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both paths read the same map: the general path's completion and the lane's routes."""
    monkeypatch.setattr(lorawan_formats, "load_keymap", lambda: KEYMAP)
    monkeypatch.setattr(pipeline_module, "load_keymap", lambda: KEYMAP)
    yield


def resolve(scheme: str, key: str) -> DeviceInfo | None:
    return BY_EUI.get(key) if scheme == "deveui" else BY_ID.get(key)


def pipelines(health_interval_s: float = 0) -> tuple[Pipeline, Pipeline]:
    def make(fast: bool) -> Pipeline:
        return Pipeline(CATALOGUE, BY_ID.get, "city/v1", max_payload_bytes=4096,
                        use_fast_lane=fast, resolve=resolve,
                        health_interval_ns=round(health_interval_s * 1e9))  # fmt: skip

    return make(True), make(False)


def outcome(result: BatchResult) -> tuple[Any, ...]:
    rejects = [(r.device_id, r.reason, r.detail, r.seq, r.named, r.payload, r.count)
               for r in result.rejects]  # fmt: skip
    return (result.lines, result.stored, rejects, result.status, result.health,
            result.unknown_keys)  # fmt: skip


hostile_values = st.one_of(
    st.floats(),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.sampled_from(["auto", "disco", ""]),
    st.none(),
    st.just({"nested": 1.0}),
    st.just({"a": {"b": {"c": {"d": {"e": 1}}}}}),
    st.just([1.0]),
)


def aliases(type_id: str) -> list[str]:
    """Names the key map turns into the type's quantities, health, or drops."""
    by_type = [k for k in KEYMAP.types.get(type_id, {})]
    return [*by_type, *APP_KEYS, "battery", "batteryLevel", "vbat", "margin"]


@st.composite
def decoded_payload(draw: st.DrawFn, type_id: str, clean: bool) -> dict[str, Any]:
    quantities = CATALOGUE.types[type_id].quantities
    names = list(quantities) + aliases(type_id)
    keys = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True))
    extra = st.lists(st.sampled_from(["fw", "rssi", "ts", "seq", "time", "values", "x y"]))
    keys += draw(mostly(st.just([]), extra, clean))
    out: dict[str, Any] = {}
    for key in keys:
        target = APP_KEYS.get(key) or KEYMAP.types.get(type_id, {}).get(key) or key
        q = quantities.get(target)
        good = good_value(q) if q is not None else st.floats(0, 5) | st.integers(0, 100)
        out[key] = draw(mostly(good, hostile_values, clean))
    return out


def raw_bytes(type_id: str, values: dict[str, Any]) -> bytes:
    sensor_type = CATALOGUE.types[type_id]
    readable = {q: v for q, v in values.items() if q in sensor_type.quantities}
    return encode_values(sensor_type, readable, KEYMAP)


# Edits of a well-formed body: each makes it unusual in one way (the general path says how).
Edit = Callable[[dict[str, Any], str], None]


def _at(doc: dict[str, Any], network: str) -> dict[str, Any]:
    return doc if network == "chirpstack" else doc.setdefault("uplink_message", {})


def _ids(doc: dict[str, Any], network: str) -> dict[str, Any]:
    key = "deviceInfo" if network == "chirpstack" else "end_device_ids"
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _set(chirpstack: str, tts: str, value: Any) -> Edit:
    """An edit setting the field each network names its way (in the uplink's object)."""
    return lambda d, n: _at(d, n).update({chirpstack if n == "chirpstack" else tts: value})


def _pop(chirpstack: str, tts: str) -> Edit:
    return lambda d, n: _at(d, n).pop(chirpstack if n == "chirpstack" else tts, None)


def _set_id(chirpstack: str, tts: str, value: Any) -> Edit:
    """An edit of the device's identifiers (deviceInfo / end_device_ids)."""
    return lambda d, n: _ids(d, n).update({chirpstack if n == "chirpstack" else tts: value})


EDITS: dict[str, Edit] = {
    "f_cnt_string": _set("fCnt", "f_cnt", "5"),
    "f_cnt_float": _set("fCnt", "f_cnt", 5.0),
    "f_cnt_big": _set("fCnt", "f_cnt", 2**32),
    "f_cnt_null": _set("fCnt", "f_cnt", None),
    "f_port_big": _set("fPort", "f_port", 256),
    "f_port_bool": _set("fPort", "f_port", True),
    "no_time": _pop("time", "received_at"),
    "time_number": _set("time", "received_at", NOW_NS),
    "time_future": _set("time", "received_at", rfc3339(NOW_NS + 600 * 10**9)),
    "time_old": _set("time", "received_at", rfc3339(NOW_NS - 40 * 86400 * 10**9)),
    "time_offset": _set("time", "received_at", "2026-12-07T10:00:00.5+08:00"),
    "time_comma": _set("time", "received_at", rfc3339(NOW_NS).replace(".", ",")),
    "time_short": _set("time", "received_at", rfc3339(NOW_NS)[:23] + "Z"),
    "eui_upper": lambda d, n: _ids(d, n).update(
        {"devEui": str(_ids(d, n).get("devEui", "")).upper()}),
    "eui_lower": lambda d, n: _ids(d, n).update(
        {"dev_eui": str(_ids(d, n).get("dev_eui", "")).lower()}),
    "eui_other": _set_id("devEui", "dev_eui", "70b3d57ed0000001"),
    "eui_missing": lambda d, n: _ids(d, n).clear(),
    "app_other": lambda d, n: _ids(d, n).update(
        {"applicationId": "other"} if n == "chirpstack"
        else {"application_ids": {"application_id": "other"}}),
    "app_empty": lambda d, n: _ids(d, n).update(
        {"applicationId": ""} if n == "chirpstack" else {"application_ids": {}}),
    "name_number": _set_id("deviceName", "device_id", 7),
    "name_other": _set_id("deviceName", "device_id", "someone-else"),
    "dedup_null": lambda d, n: d.update({"deduplicationId": None}),
    "rx_object": _set("rxInfo", "rx_metadata", {"rssi": -80}),
    "rx_mixed": _set("rxInfo", "rx_metadata",
                     [1, {"rssi": True, "snr": 3}, {"rssi": -70.5}, {"rssi": 1e308, "snr": "x"}]),
    "rx_none": _pop("rxInfo", "rx_metadata"),
    "data_bad": _set("data", "frm_payload", "not base64!"),
    "data_number": _set("data", "frm_payload", 12),
    "data_junk": _set("data", "frm_payload", base64.b64encode(b"\x01\x67").decode()),
    "object_empty": _set("object", "decoded_payload", {}),
    "object_list": _set("object", "decoded_payload", [1]),
    "no_payload": lambda d, n: [_at(d, n).pop(k, None) for k in
                                ("object", "data", "decoded_payload", "frm_payload")],
    "simulated": lambda d, n: d.update({"simulated": True}),
    "simulated_text": lambda d, n: d.update({"simulated": "no"}),
    "no_uplink": lambda d, n: d.pop("uplink_message", None) if n == "tts" else d.clear(),
    "outer_time": lambda d, n: _at(d, n).pop("received_at", None) if n == "tts" else None,
}  # fmt: skip
TOPIC_EDITS = ["status", "join", "other_device", "other_app", "tenantless", "http", "bom"]
HTTP_QUERIES = ["", "?event=up", "?event=up", "?event=join", "?event=status", "?event=log",
                "?event=up&event=join", "?x=1"]  # fmt: skip


def topic_edit(topic: str, payload: bytes, edit: str, network: str) -> tuple[str, bytes]:
    parts = topic.split("/")
    if edit == "status":
        return topic.rsplit("/", 1)[0] + "/status", payload
    if edit == "join":
        return topic.rsplit("/", 1)[0] + "/join", payload
    if edit == "other_device":
        parts[3] = "70b3d57ed0000001" if network == "chirpstack" else "aq-1"
        return "/".join(parts), payload
    if edit == "other_app":
        parts[1] = "other"
        return "/".join(parts), payload
    if edit == "tenantless" and network == "tts":
        parts[1] = parts[1].split("@")[0]
        return "/".join(parts), payload
    if edit == "http":
        return f"http/ns-1/{network}?event=up", payload
    if edit == "bom":
        return topic, b"\xef\xbb\xbf" + payload
    return topic, payload


@st.composite
def message(draw: st.DrawFn) -> InboundMessage:
    clean = draw(st.booleans())
    network = draw(st.sampled_from(["chirpstack", "tts"]))
    dev = draw(mostly(st.sampled_from(DEVICES[:6]), st.sampled_from(DEVICES), clean))
    eui = dev.dev_eui or ""
    if not clean and draw(st.integers(0, 15)) == 0:
        eui = UNREGISTERED
    type_id = dev.type
    values = draw(decoded_payload(type_id, clean))
    has_codec = CATALOGUE.types[type_id].codec is not None
    kwargs: dict[str, Any] = {}
    if has_codec and draw(st.booleans()):
        quantities = {q: good_value(CATALOGUE.types[type_id].quantities[q])
                      for q in CATALOGUE.types[type_id].quantities}  # fmt: skip
        readable = draw(st.fixed_dictionaries(quantities))
        kwargs["data"] = raw_bytes(type_id, readable)
    else:
        kwargs["decoded"] = values
    if draw(st.integers(0, 4)) == 0:
        kwargs["application"] = SIM_APPLICATION if network == "chirpstack" else TTS_APP
    f_cnt = draw(st.sampled_from([0, 1, 7, 65535, 2**32 - 1]) | st.integers(0, 2**20))
    received = NOW_NS - draw(st.integers(0, 3600 * 10**9))
    gateways = draw(st.integers(0, 3))
    rssi = draw(st.sampled_from([-120.0, -87.0, -35.5]))
    f_port = draw(st.integers(1, 223))
    topic, body = uplink(network, eui, dev.id, f_cnt, received, gateways=gateways,
                         rssi=rssi, f_port=f_port, **kwargs)  # fmt: skip
    if not clean:
        doc = orjson.loads(body)
        for name in draw(st.lists(st.sampled_from(sorted(EDITS)), max_size=2)):
            EDITS[name](doc, network)
        body = json.dumps(doc).encode()  # big integers too, unlike orjson
        if draw(st.integers(0, 5)) == 0:
            topic, body = topic_edit(topic, body, draw(st.sampled_from(TOPIC_EDITS)), network)
    if draw(st.integers(0, 3)) == 0:  # an HTTP integration's route: the body names the device
        topic = f"http/ns-1/{network}" + draw(st.sampled_from(HTTP_QUERIES))
    return InboundMessage(topic, body, 1, None, NOW_NS - 1000, network)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message(), min_size=1, max_size=4), st.sampled_from([0, 0, 900]))
def test_envelope_lane_answers_as_the_general_path(
    messages: list[InboundMessage], health_interval_s: float
) -> None:
    fast, general = pipelines(health_interval_s)
    assert outcome(fast.process(messages, NOW_NS)) == outcome(general.process(messages, NOW_NS))


def well_formed() -> list[InboundMessage]:
    """What network servers send for the fleet: decoded by the NS, or raw bytes for the
    type's codec (a layout with battery as health, CayenneLPP renamed by the key map)."""
    t = NOW_NS - 10**9
    aq = {"pm25": 12.5, "pm10": 40, "no2": 20.25, "o3": 80.0, "co": 0.5}
    wl = encode_values(CATALOGUE.types["waterlogging"], {"depth": 1.5}, KEYMAP, battery_v=3.3)
    ws = encode_values(CATALOGUE.types["weather"], {"temperature": 21.5, "humidity": 60.0,
                                                    "pressure": 1012.3}, KEYMAP)  # fmt: skip
    sent = [
        ("chirpstack", uplink("chirpstack", "70B3D57ED0000001", "AQ-1", 5, t, decoded=aq)),
        ("tts", uplink("tts", "70B3D57ED0000001", "AQ-1", 6, t + 1, decoded=aq, gateways=2)),
        ("chirpstack", uplink("chirpstack", "70B3D57ED0000002", "WL-1", 7, t + 2, data=wl)),
        ("tts", uplink("tts", "70B3D57ED0000003", "WS-1", 8, t + 3, data=ws)),
        ("chirpstack", uplink("chirpstack", "70B3D57ED0000006", "TF-1", 0, t + 4,
                              decoded={"count": 12, "mean_speed": 31.5, "fw": "1.2"})),
        ("tts", uplink("tts", "70B3D57ED0000004", "SL-1", 9, t + 5,
                       decoded={"power": 80.0, "on": True, "mode": "auto", "battery": 97})),
    ]  # fmt: skip
    return [InboundMessage(topic, body, 1, None, NOW_NS, network)
            for network, (topic, body) in sent]  # fmt: skip


def over_http(m: InboundMessage) -> InboundMessage:
    """The same uplink from the network server's HTTP integration (ChirpStack: ``?event=up``;
    a The Things Stack webhook: its own path), as the HTTP input hands it over."""
    query = "?event=up" if m.fmt == "chirpstack" else ""
    return InboundMessage(f"http/ns-1/{m.fmt}{query}", m.payload, None, None, NOW_NS, m.fmt)


def test_well_formed_envelopes_take_the_lane() -> None:
    """Fails if the lane silently steps aside for what network servers really send."""
    fast, general = pipelines()
    for m in [*well_formed(), *map(over_http, well_formed())]:
        assert fast._envelopes.take(m.fmt, m.topic, m.payload, NOW_NS, BatchResult()), m.topic
    webhooks = [over_http(m) for m in well_formed()]
    assert outcome(fast.process(webhooks, NOW_NS)) == outcome(general.process(webhooks, NOW_NS))
    result = fast.process(well_formed(), NOW_NS)
    assert outcome(result) == outcome(general.process(well_formed(), NOW_NS))
    assert len(result.lines) == 6 and len(result.health) == 6 and not result.rejects
    t = NOW_NS - 10**9
    assert result.lines[0] == (
        "air_quality,sensor_id=AQ-1,subdistrict=beizhan "
        f"pm25=12.5,pm10=40.0,no2=20.25,o3=80.0,co=0.5,seq=5i {t}"
    )
    assert result.health[0] == (
        "device_health,sensor_id=AQ-1,subdistrict=beizhan "
        f"f_cnt=5i,gateways=1i,rssi=-87.0,snr=7.5,f_port=2i {t}"
    )
    assert result.health[2].endswith(f"f_port=2i,battery_v=3.3 {t + 2}")  # from the layout
    assert result.lines[3].startswith("weather,sensor_id=WS-1,subdistrict=beizhan temperature=21.5")
    assert result.unknown_keys == {("TF-1", "fw"): 1}
    assert result.health[5].endswith(f"battery_pct=97.0 {t + 5}")
    assert result.stored == [("AQ-1", 5), ("AQ-1", 6), ("WL-1", 7), ("WS-1", 8), ("TF-1", 0),
                             ("SL-1", 9)]  # fmt: skip


@pytest.mark.parametrize("edit", ["simulated", "f_cnt_string", "app_other", "object_empty",
                                  "name_other", "time_future", "rx_object"])  # fmt: skip
def test_unusual_envelopes_step_aside(edit: str) -> None:
    fast, general = pipelines()
    [m] = [w for w in well_formed() if w.fmt == "tts"][:1]
    doc = orjson.loads(m.payload)
    EDITS[edit](doc, "tts")
    payload = orjson.dumps(doc)
    out = BatchResult()
    assert not fast._envelopes.take("tts", m.topic, payload, NOW_NS, out)
    assert not out.lines and not out.stored and not out.health
    edited = InboundMessage(m.topic, payload, 1, None, NOW_NS, "tts")
    assert outcome(fast.process([edited], NOW_NS)) == outcome(general.process([edited], NOW_NS))


def test_one_odd_message_does_not_keep_its_topic_off_the_lane() -> None:
    fast, _ = pipelines()
    lane = fast._envelopes
    # a DevEUI written otherwise than in the topic; a DevEUI nobody registered
    edits: dict[str, Edit] = {"chirpstack": EDITS["eui_upper"],
                              "tts": _set_id("devEui", "dev_eui", UNREGISTERED)}  # fmt: skip
    for network, edit in edits.items():
        m = next(w for w in well_formed() if w.fmt == network)
        doc = orjson.loads(m.payload)
        edit(doc, network)
        assert not lane.take(network, m.topic, orjson.dumps(doc), NOW_NS, BatchResult())
        assert lane.take(network, m.topic, m.payload, NOW_NS, BatchResult())
