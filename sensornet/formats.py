"""Payload formats other than the native JSON, and how a device is named in them.

An input that receives a non-native format (a LoRaWAN network server's envelope, SenML
CBOR, a Sensor.Community push) sets ``InboundMessage.fmt`` to the format's name; the
pipeline then decodes the payload with the decoder registered here under that name, and
goes on exactly as for native messages (validation, line protocol, dead letters). So a
new format is a pure decoder in ``sensornet/`` and one line in ``FORMATS``; the pipeline
does not change (docs/decisions.md, "Inputs").

A decoder is ``decode(payload, topic, max_bytes) -> Decoded``: pure, no I/O. ``topic`` is
what the input received the message under (a network server's MQTT topic carries the
device's DevEUI; for a device authenticated by the input it is the device's native topic,
``<prefix>/<id>/readings``). A message-level fault raises ``PayloadError`` (a dead letter
with its reason); a bad item among several goes to ``Decoded.rejects``.

Each ``RawReading`` names its device by ``sensor_id``: a registry id when ``scheme`` is
``""``, else a key in that scheme (``ID_SCHEMES``), which the pipeline resolves through the
registry cache (``DeviceCache.resolve``). A reading naming no device belongs to the
publisher: the device of the message's native topic.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sensornet.records import Decoded

Decoder = Callable[[bytes, str, int], Decoded]

NATIVE = ""  # the platform's own JSON shapes (sensornet.codec), decided by the topic kind

# format name -> "module:function" of its decoder, imported when first used
FORMATS: dict[str, str] = {
    # LoRaWAN network servers' uplink envelopes (docs/inputs/lorawan.md)
    "chirpstack": "sensornet.lorawan.formats:decode_chirpstack",
    "tts": "sensornet.lorawan.formats:decode_tts",
    # the airrohr firmware's push (HTTP input, integration route): docs/inputs/sensor-community.md
    "sensor.community": "sensornet.sensor_community:push_format",
    # records of the public data API (the sensor_community pull input)
    "sensor.community.api": "sensornet.sensor_community:api_format",
}

# Request headers an HTTP push of a format carries meaning in: the HTTP input passes the
# ones present to the decoder as the topic's last segments, ``<header>=<value>``.
FORMAT_HEADERS: dict[str, tuple[str, ...]] = {
    "sensor.community": ("x-sensor", "x-pin"),  # the airrohr firmware's node and sensor
}

# Ways a payload may name a device besides its registry id. The registry cache maps each
# (scheme, key) to a sensor id (``sensornet.registry.store.load_aliases``).
ID_SCHEMES: frozenset[str] = frozenset({"deveui", "sc_chip", "sc_location", "senml_name"})

_loaded: dict[str, Decoder] = {}


def decoder_for(fmt: str) -> Decoder | None:
    """The decoder of ``fmt``, or ``None`` when no such format is registered."""
    decoder = _loaded.get(fmt)
    if decoder is None:
        target = FORMATS.get(fmt)
        if target is None:
            return None
        module_name, _, function = target.partition(":")
        decoder = _loaded[fmt] = getattr(importlib.import_module(module_name), function)
    return decoder
