"""Payload builders for what devices send (docs/payloads.md). Pure: values in, bytes out."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import cbor2
import orjson

from sensornet.lineprotocol import FieldValue
from sensornet.senml import JSON_TO_CBOR

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"


@dataclass(frozen=True, slots=True)
class Item:
    """One reading of one sensor, as a device produced it."""

    sensor_id: str
    ts_ms: int
    seq: int
    values: Mapping[str, FieldValue]


def flat(item: Item) -> bytes:
    return orjson.dumps({"ts": item.ts_ms, "seq": item.seq, **item.values})


def gateway_pack(gateway_id: str, items: Sequence[Item], now_ms: int) -> bytes:
    return orjson.dumps(
        {
            "gw": gateway_id,
            "ts": now_ms,
            "readings": [
                {"sensor": i.sensor_id, "ts": i.ts_ms, "seq": i.seq, **i.values} for i in items
            ],
        }
    )


def _senml_value(value: FieldValue) -> tuple[str, FieldValue]:
    if isinstance(value, bool):
        return "vb", value
    if isinstance(value, str):
        return "vs", value
    return "v", value


def senml_records(items: Sequence[Item]) -> list[dict[str, object]]:
    """RFC 8428 records: one base name per sensor (``<id>/``, its registry id being its
    SenML name), base time in seconds, and the reading's ``seq`` as a record named ``seq``
    (SenML has no sequence number of its own; docs/inputs/senml.md)."""
    records: list[dict[str, object]] = []
    for item in items:
        records.append(
            {"bn": f"{item.sensor_id}/", "bt": item.ts_ms / 1000, "n": "seq", "v": item.seq}
        )
        for quantity, value in item.values.items():
            key, v = _senml_value(value)
            records.append({"n": quantity, key: v})
    return records


def senml_pack(items: Sequence[Item]) -> bytes:
    """A SenML JSON pack (``application/senml+json``)."""
    return orjson.dumps(senml_records(items))


def senml_cbor_pack(items: Sequence[Item]) -> bytes:
    """The same pack in CBOR (RFC 8428 §6, integer labels, ``application/senml+cbor``)."""
    return cbor2.dumps(
        [{JSON_TO_CBOR[label]: v for label, v in r.items()} for r in senml_records(items)]
    )


DeviceFormat = Literal["flat", "senml", "senml_cbor", "sensor_community"]
COMMUNITY_TYPE = "community_air"


def device_format(sensor_id: str, type_id: str) -> DeviceFormat:
    """What a simulated sensor that is not behind a gateway speaks, fixed by its id so
    fleet and publisher agree: a community node pushes as the airrohr firmware does (over
    HTTP when the simulator has a push target, else flat over MQTT); of the others, one in
    five sends SenML JSON and one in five SenML CBOR, the rest the flat object."""
    if type_id == COMMUNITY_TYPE:
        return "sensor_community"
    return ("senml", "senml_cbor", "flat", "flat", "flat")[zlib.crc32(sensor_id.encode()) % 5]


def pushes_over_http(sender_id: str, share: float) -> bool:
    """Whether a simulated device or gateway is one of the ``share`` that push their
    readings over the HTTP input instead of MQTT: fixed by its id (independent of the
    format it speaks), so a run is reproducible and the fleet's mix stays the same."""
    if share <= 0:
        return False
    return zlib.crc32(f"{sender_id}/http".encode()) % 10_000 < share * 10_000


def content_type(payload_format: str) -> str:
    """The ``Content-Type`` a device posts its native payload with (docs/payloads.md)."""
    return {"senml": "application/senml+json", "senml_cbor": "application/senml+cbor"}.get(
        payload_format, "application/json"
    )


def senml_name_for(sensor_id: str) -> str:
    """A SenML device's registered name, a URN of the RFC 8428 §5 kind (urn:dev:ops)."""
    return f"urn:dev:ops:32473-sensornet-{sensor_id}"


def chip_id_for(sensor_id: str) -> str:
    """A stable ESP8266-style chip id (decimal) for a simulated community node."""
    return str(int(hashlib.sha256(sensor_id.encode()).hexdigest()[:12], 16) % 10**10)


def senml_device_pack(item: Item, name: str, cbor: bool) -> bytes:
    """One reading as a SenML device sends it, named by its SenML ``name``, with its seq."""
    records: list[dict[str, object]] = [
        {"bn": name + ":", "bt": item.ts_ms / 1000, "n": "seq", "v": item.seq}
    ]
    for quantity, value in item.values.items():
        key, v = _senml_value(value)
        records.append({"n": quantity, key: v})
    if cbor:
        return cbor2.dumps([{JSON_TO_CBOR[k]: v for k, v in r.items()} for r in records])
    return orjson.dumps(records)


# The firmware's value types for the community node's quantities (sensornet.sensor_community)
_FIRMWARE_TYPES = {"pm10": "SDS_P1", "pm25": "SDS_P2", "temperature": "BME280_temperature",
                   "humidity": "BME280_humidity", "pressure": "BME280_pressure",
                   "laeq": "DNMS_noise_LAeq", "pm1": "PMS_P0"}  # fmt: skip


def airrohr_push(item: Item, chip: str) -> bytes:
    """What the airrohr firmware posts to its "own API": values as text with two decimals,
    pressure in Pa, the node's diagnostics; no time and no seq (the firmware has neither)."""
    values = []
    for quantity, value in item.values.items():
        number = float(value)
        if quantity == "pressure":
            number *= 100  # the firmware sends Pa
        values.append({"value_type": _FIRMWARE_TYPES[quantity], "value": f"{number:.2f}"})
    values += [{"value_type": "samples", "value": "742381"},
               {"value_type": "signal", "value": "-67"}]  # fmt: skip
    return orjson.dumps(
        {"esp8266id": chip, "software_version": "NRZ-2020-133",
         "sensordatavalues": values}
    )  # fmt: skip
