"""The LoRaWAN formats through the pipeline alone (no I/O): whose account a refusal is
booked under, health beside readings (and its optional sampling), a status event that is
health only, values completed by the device's type."""

from __future__ import annotations

import time

from gateway_sim.lorawan import chirpstack_uplink, tts_uplink
from ingest.pipeline import Pipeline
from sensornet.catalogue import load_catalogue
from sensornet.mqtt_wire import InboundMessage
from sensornet.registry.store import DeviceInfo

WL = DeviceInfo("WL-1", "waterlogging", "beizhan", 31.247, 121.475, "active", None,
                "70B3D57ED005B89A")  # fmt: skip
RETIRED = DeviceInfo("WL-2", "waterlogging", "beizhan", 31.247, 121.475, "retired", None,
                     "70B3D57ED005B89B")  # fmt: skip
BY_EUI = {d.dev_eui: d for d in (WL, RETIRED)}
BY_ID = {d.id: d for d in (WL, RETIRED)}


def pipeline(health_interval_s: float = 0) -> Pipeline:
    return Pipeline(load_catalogue(), BY_ID.get, "city/v1",
                    resolve=lambda s, k: BY_EUI.get(k) if s == "deveui" else BY_ID.get(k),
                    health_interval_ns=round(health_interval_s * 1e9))  # fmt: skip


def msg(topic_body: tuple[str, bytes], fmt: str = "chirpstack") -> InboundMessage:
    return InboundMessage(topic_body[0], topic_body[1], None, None, 0, fmt)


def test_health_beside_each_reading_or_sampled() -> None:
    t0 = time.time_ns() - 60 * 10**9
    eui = WL.dev_eui or ""
    ups = [msg(chirpstack_uplink(eui, "wl", i, t0 + i * 10 * 10**9, decoded={"depth": 1.5},
                                 rssi=-90 - i)) for i in range(3)]  # fmt: skip
    every = pipeline().process(ups, time.time_ns())
    assert len(every.lines) == 3 and len(every.health) == 3
    assert every.health[0].startswith("device_health,sensor_id=WL-1,subdistrict=beizhan ")
    assert "rssi=-90" in every.health[0] and "f_cnt=0i" in every.health[0]
    sampled = pipeline(health_interval_s=15).process(ups, time.time_ns())
    assert len(sampled.lines) == 3 and len(sampled.health) == 2  # 0 s and 20 s kept


def test_refusals_are_booked_under_the_resolved_device() -> None:
    t0 = time.time_ns() - 60 * 10**9
    out = pipeline().process([
        msg(tts_uplink(WL.dev_eui or "", "wl-1", 4, t0, decoded={"depth": 999.0}), "tts"),
        msg(tts_uplink(WL.dev_eui or "", "wl-1", 5, t0 + 1, decoded={"depth": 1.0},
                       simulated=True), "tts"),
        msg(chirpstack_uplink(WL.dev_eui or "", "wl", 6, t0 + 2, data=b"\x00\x01")),
        msg(chirpstack_uplink("0101010101010101", "x", 1, t0 + 3, decoded={"depth": 1.0})),
        msg(chirpstack_uplink(RETIRED.dev_eui or "", "x", 1, t0 + 4, decoded={"depth": 1.0})),
    ], time.time_ns())  # fmt: skip
    got = [(r.device_id, r.reason, r.seq, r.named) for r in out.rejects]
    assert got == [
        ("WL-1", "out_of_range", 4, None),
        ("WL-1", "simulated", None, None),
        ("WL-1", "codec_error", 6, None),  # 2 bytes, the layout has 3
        ("_unknown", "unknown_sensor", 1, "deveui:0101010101010101"),
        ("WL-2", "sensor_retired", 1, None),
    ]
    assert not out.lines
    assert len(out.health) == 2  # the out-of-range and the undecodable uplinks' radio


def test_status_event_is_health_only() -> None:
    t0 = time.time_ns() - 60 * 10**9
    topic, body = chirpstack_uplink(WL.dev_eui or "", "wl", 0, t0)
    status = body.replace(b'"fPort":2', b'"margin":7,"batteryLevel":55.5')
    out = pipeline().process([msg((topic.replace("/up", "/status"), status))], time.time_ns())
    assert not out.lines and not out.rejects
    [line] = out.health
    assert "battery_pct=55.5" in line and "margin=7" in line and "f_cnt" not in line
