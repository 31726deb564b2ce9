"""Payload builders for what devices send (docs/payloads.md). Pure: values in, bytes out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from sensornet.lineprotocol import FieldValue

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


def senml_pack(items: Sequence[Item]) -> bytes:
    """RFC 8428 pack: one base name per sensor (``<id>/``), base time in seconds. SenML has
    no sequence number, so these readings are accounted by sensor and time."""
    records: list[dict[str, object]] = []
    for item in items:
        first = True
        for quantity, value in item.values.items():
            key, v = _senml_value(value)
            record: dict[str, object] = {"n": quantity, key: v}
            if first:
                record = {"bn": f"{item.sensor_id}/", "bt": item.ts_ms / 1000, **record}
                first = False
            records.append(record)
    return orjson.dumps(records)
