"""The LoRaWAN formats of ``sensornet.formats``: a network server's uplink envelope to a
reading that names its device by DevEUI (scheme ``deveui``), whose values are completed
once the device's type is known (the type's codec and key map). Pure.

``topic`` is the network server's MQTT topic (checked against the body), or the HTTP
input's ``http/<integration>/<format>[?<query>]`` for the NS's HTTP integration (ChirpStack:
``?event=up``; a The Things Stack webhook posts uplinks only to the path it is given): the
body alone names the device.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs

from sensornet.catalogue import SensorType
from sensornet.errors import PayloadError
from sensornet.lorawan.envelope import Network, Uplink, parse_uplink
from sensornet.lorawan.keymap import load_keymap
from sensornet.lorawan.values import radio_health, uplink_values
from sensornet.records import Completion, Decoded, RawReading

HTTP_PREFIX = "http/"  # the HTTP input's integration routes (ingest/inputs/http.py)
# ChirpStack's HTTP integration posts every event to one URL (?event=...): those that
# carry no reading nor device health are answered and not stored (integration.proto)
CHIRPSTACK_OTHER_EVENTS = frozenset({"join", "ack", "txack", "log", "location", "integration"})


def _uplink(payload: bytes, topic: str, max_bytes: int, network: Network) -> Uplink:
    if topic.startswith(HTTP_PREFIX):
        event = parse_qs(topic.partition("?")[2]).get("event", ["up"])[-1]
        return parse_uplink(payload, network, max_bytes, event=event)
    return parse_uplink(payload, network, max_bytes, topic)


def complete(uplink: Uplink, status_only: bool, sensor_type: SensorType) -> Completion:
    """The reading's values and the device's health, now that its type is known."""
    health = radio_health(uplink)
    if status_only:
        return Completion({}, {k: v for k, v in health.items() if k != "f_cnt"}, reading=False)
    if uplink.simulated:
        error = PayloadError("simulated", "a simulated uplink (The Things Stack): not stored")
        return Completion({}, {}, error)
    try:
        values = uplink_values(uplink, sensor_type, load_keymap())
    except PayloadError as exc:
        exc.__traceback__ = None
        return Completion({}, health, exc)
    health.update(values.health)
    if not values.readings:
        kept = ", ".join(sorted(values.health)) or "radio metadata"
        error = PayloadError("no_values", f"only device health ({kept}), kept in device_health")
        return Completion({}, health, error)
    return Completion(values.readings, health)


def _decode(payload: bytes, topic: str, max_bytes: int, network: Network) -> Decoded:
    if network == "chirpstack" and topic.startswith(HTTP_PREFIX):
        event = parse_qs(topic.partition("?")[2]).get("event", ["up"])[-1]
        if event in CHIRPSTACK_OTHER_EVENTS:
            return Decoded([], [])
    uplink = _uplink(payload, topic, max_bytes, network)
    status_only = bool(uplink.extra)  # a ChirpStack status event: health, not a reading
    reading = RawReading(
        values={},
        ts_ns=uplink.received_ns,
        seq=None if status_only or uplink.simulated else uplink.f_cnt,
        sensor_id=uplink.dev_eui,
        scheme="deveui",
        complete=partial(complete, uplink, status_only),
    )
    return Decoded([reading], [])


def decode_chirpstack(payload: bytes, topic: str, max_bytes: int) -> Decoded:
    return _decode(payload, topic, max_bytes, "chirpstack")


def decode_tts(payload: bytes, topic: str, max_bytes: int) -> Decoded:
    return _decode(payload, topic, max_bytes, "tts")
