"""Payload builders for what devices send (docs/payloads.md). Pure: values in, bytes out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
