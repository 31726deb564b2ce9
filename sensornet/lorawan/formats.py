"""The LoRaWAN formats of ``sensornet.formats``: a network server's uplink envelope to a
reading that names its device by DevEUI (scheme ``deveui``), whose values are completed
once the device's type is known (the type's codec and key map). Pure.

``topic`` is the network server's MQTT topic (checked against the body), or for its HTTP
integration ``http:<network>/<event>`` (``HTTP_TOPICS``): the body alone names the device.
"""

from __future__ import annotations

from functools import partial

from sensornet.catalogue import SensorType
from sensornet.errors import PayloadError
from sensornet.lorawan.envelope import Network, Uplink, parse_uplink
from sensornet.lorawan.keymap import load_keymap
from sensornet.lorawan.values import radio_health, uplink_values
from sensornet.records import Completion, Decoded, RawReading

HTTP_PREFIX = "http:"


def http_topic(network: Network, event: str) -> str:
    """The topic an HTTP integration's message is handed over with."""
    return f"{HTTP_PREFIX}{network}/{event}"


def _uplink(payload: bytes, topic: str, max_bytes: int, network: Network) -> Uplink:
    if topic.startswith(HTTP_PREFIX):
        sent_by, _, event = topic[len(HTTP_PREFIX) :].partition("/")
        if sent_by != network:
            raise PayloadError("bad_topic", f"{topic!r:.60} is not a {network} integration")
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
