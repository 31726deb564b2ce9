"""The inputs seam (docs/decisions.md, "Inputs"): inputs are chosen by name, a message's
``fmt`` picks a decoder of ``sensornet.formats`` (only inputs set it), a device named in a
scheme is found through the registry cache's resolver, and an input learns what became of
its own messages. The inputs themselves are tested over real sockets in their own files."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from ingest.inputs import INPUTS, BatchOutcome, InputContext, build_inputs
from ingest.inputs.mqtt import MqttSource
from ingest.metrics import IngestStats
from ingest.pipeline import Pipeline
from sensornet import formats
from sensornet.catalogue import load_catalogue
from sensornet.errors import ConfigError, PayloadError
from sensornet.mqtt_wire import InboundMessage
from sensornet.records import Decoded, ItemReject, RawReading
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings

NOW_NS = time.time_ns()
DEVICES = {
    "AQ-1": DeviceInfo("AQ-1", "air_quality", "jingansi", 31.2, 121.4, "active"),
    "AQ-2": DeviceInfo("AQ-2", "air_quality", "jingansi", 31.2, 121.4, "active", "GW-1"),
    "AQ-3": DeviceInfo("AQ-3", "air_quality", "jingansi", 31.2, 121.4, "active"),
}
ALIASES = {("deveui", "0004a30b001c0530"): "AQ-2", ("deveui", "70b3d57ed0000001"): "AQ-3"}


def resolve(scheme: str, key: str) -> DeviceInfo | None:
    sensor_id = ALIASES.get((scheme, key))
    return None if sensor_id is None else DEVICES.get(sensor_id)


def decode_kv(payload: bytes, topic: str, max_bytes: int) -> Decoded:
    """A toy format: ``deveui=<hex>;pm25=<number>`` lines, or ``pm25=<n>`` for the publisher."""
    if len(payload) > max_bytes:
        raise PayloadError("oversize", "too big")
    out = Decoded([], [])
    for index, line in enumerate(payload.decode().splitlines()):
        parts = dict(part.split("=", 1) for part in line.split(";"))
        deveui = parts.pop("deveui", None)
        try:
            values: dict[str, Any] = {k: float(v) for k, v in parts.items()}
        except ValueError as exc:
            out.rejects.append(ItemReject(index, None, PayloadError("bad_kv", str(exc))))
            continue
        scheme = "deveui" if deveui else ""
        out.readings.append(RawReading(values, NOW_NS - index, None, deveui, scheme))
    return out


@pytest.fixture
def kv_format(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(formats.FORMATS, "test.kv", f"{__name__}:decode_kv")
    monkeypatch.setattr(formats, "_loaded", {})
    return "test.kv"


def pipeline() -> Pipeline:
    return Pipeline(load_catalogue(), DEVICES.get, "city/v1", resolve=resolve)


def test_a_format_message_is_decoded_by_its_format_and_devices_resolved_by_scheme(
    kv_format: str,
) -> None:
    payload = b"deveui=0004a30b001c0530;pm25=11\ndeveui=ffffffffffffffff;pm25=12\npm25=x"
    trusted_route = InboundMessage("lorawan/app-1/up", payload, None, None, NOW_NS, kv_format)
    result = pipeline().process([trusted_route], NOW_NS)
    assert result.stored == [("AQ-2", None)]
    assert result.lines[0].startswith("air_quality,sensor_id=AQ-2,")
    refused = sorted((r.reason, r.device_id, r.named) for r in result.rejects)
    assert refused == [
        ("bad_kv", "_unknown", None),
        ("unknown_sensor", "_unknown", "deveui:ffffffffffffffff"),
    ]


def test_a_format_on_a_device_topic_carries_only_that_device_and_its_sensors(
    kv_format: str,
) -> None:
    payload = b"pm25=10\ndeveui=0004a30b001c0530;pm25=11\ndeveui=70b3d57ed0000001;pm25=12"
    on_gateway = InboundMessage("city/v1/GW-1/pack", payload, None, None, NOW_NS, kv_format)
    on_sensor = InboundMessage("city/v1/AQ-1/readings", b"pm25=9", None, None, NOW_NS, kv_format)
    result = pipeline().process([on_gateway, on_sensor], NOW_NS)
    # GW-1 carries AQ-2 (attached to it); AQ-3 is not its sensor, GW-1 itself is no sensor
    assert result.stored == [("AQ-2", None), ("AQ-1", None)]
    refused = sorted((r.reason, r.named) for r in result.rejects)
    assert refused == [("foreign_gateway", "AQ-3"), ("unknown_sensor", "GW-1")]


def test_an_unknown_format_is_a_dead_letter_and_devices_cannot_pick_one() -> None:
    unknown = InboundMessage("city/v1/AQ-1/readings", b"{}", None, None, NOW_NS, "nope")
    result = pipeline().process([unknown], NOW_NS)
    assert [(r.reason, r.device_id) for r in result.rejects] == [("unknown_format", "AQ-1")]
    # the native path reads no format from the payload or topic: this is plain JSON
    native = InboundMessage(
        "city/v1/AQ-1/readings", orjson.dumps({"fmt": "test.kv", "pm25": 3.0}), 1, None, NOW_NS
    )
    result = pipeline().process([native], NOW_NS)  # "fmt" is a key like any other
    assert len(result.lines) == 1 and not result.rejects
    assert result.unknown_keys == {("AQ-1", "fmt"): 1}


def test_the_outcome_gives_each_message_its_own_refusals() -> None:
    good = InboundMessage("city/v1/AQ-1/readings", orjson.dumps({"pm25": 1.0}), 1, None, NOW_NS)
    bad = InboundMessage("city/v1/AQ-1/readings", b'{"pm25": "x"}', 2, None, NOW_NS)
    result = pipeline().process([good, bad], NOW_NS)
    outcome = BatchOutcome(result.rejects)
    assert outcome.refused(good) == []
    assert [r.reason for r in outcome.refused(bad)] == ["wrong_type"]


def test_inputs_are_chosen_by_name(tmp_path: Any) -> None:
    settings = Settings(state_dir=tmp_path, _env_file=None)
    context = InputContext(settings, lambda messages, size: None, None, IngestStats())  # type: ignore[arg-type]
    assert set(INPUTS) >= {"mqtt"}
    (mqtt,) = build_inputs(["mqtt"], context)
    assert isinstance(mqtt, MqttSource) and mqtt.name == "mqtt"
    with pytest.raises(ConfigError, match="unknown input 'carrier-pigeon'"):
        build_inputs(["carrier-pigeon"], context)


def test_inputs_setting_takes_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORNET_INGEST_INPUTS", "mqtt, http")
    assert Settings(_env_file=None).ingest_inputs == ["mqtt", "http"]
    monkeypatch.setenv("SENSORNET_INGEST_INPUTS", '["mqtt"]')
    assert Settings(_env_file=None).ingest_inputs == ["mqtt"]
