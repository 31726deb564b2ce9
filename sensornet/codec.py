"""Payload decoding: bytes from MQTT to raw readings. Pure functions, no I/O.

Accepted shapes (docs/payloads.md):
  flat object          {"ts": 1732500000, "seq": 7, "pm25": 12.3, "pm10": 40}
  ts + values          {"ts": "2026-11-25T10:00:00+08:00", "seq": 7, "values": {"pm25": 12.3}}
  array                [<flat or ts+values object>, ...]
  gateway pack         {"gw": "GW-1", "readings": [{"sensor": "AQ-1", <flat or ts+values>}, ...]}
  SenML (RFC 8428)     [{"bn": "AQ-1/", "bt": 1732500000, "n": "pm25", "v": 12.3}, ...]
  SenML CBOR (§6)      the same as a CBOR array of maps with integer labels
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson

from sensornet.errors import PayloadError
from sensornet.records import Decoded, ItemReject, RawReading
from sensornet.rules import seq_ok
from sensornet.senml import JSON_TO_CBOR, loads_cbor, resolve_pack
from sensornet.senml_resolve import SenmlContext, to_readings
from sensornet.timestamps import to_ns

MAX_READINGS_PER_MESSAGE = 10_000
MAX_DEPTH = 4


UTF8_BOM = b"\xef\xbb\xbf"


def parse_json(payload: bytes, max_bytes: int) -> Any:
    """The JSON document of ``payload``. A UTF-8 byte order mark is skipped (RFC 8259
    allows a parser to ignore it; some device SDKs write one); a payload that is not JSON
    is refused with a reason naming what it is (``not_json_reason``)."""
    if len(payload) > max_bytes:
        raise PayloadError("oversize", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    if payload.startswith(UTF8_BOM):
        payload = payload[3:]
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        reason, detail = not_json_reason(payload, str(exc))
        raise PayloadError(reason, detail[:200]) from exc
    # orjson keeps the last of duplicate keys silently. Every key is followed by a colon,
    # so when the colons equal the keys parsed there can be none (the common case, cheap);
    # otherwise (colons inside strings, e.g. RFC 3339 times) check with the slower parser.
    if payload.count(b":") != _count_keys(doc):  # also refuses nesting past MAX_DEPTH
        try:
            json.loads(payload, object_pairs_hook=_no_duplicates)
        except _DuplicateKeyError as exc:
            raise PayloadError("duplicate_key", f"key {exc.args[0]!r:.60} appears twice") from exc
    return doc


def not_json_reason(payload: bytes, error: str) -> tuple[str, str]:
    """Why ``payload`` is not JSON, named by what it most likely is: a device sending
    gzip, UTF-16 or CBOR on the JSON path is told so, not "invalid_utf8: surrogates"."""
    head = payload[:4]
    if head.startswith(b"\x1f\x8b"):
        return "gzip", "gzip-compressed payload: send it uncompressed (JSON, UTF-8)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (
        len(head) >= 2 and (head[0] == 0) != (head[1] == 0)  # ASCII in 16-bit units
    ):
        return "utf16", "UTF-16 text: JSON payloads must be UTF-8"
    if head and (0x80 <= head[0] <= 0xBF or head.startswith(b"\xd9\xd9\xf7")):
        return "cbor", "a CBOR payload (array or map) where JSON was expected"
    if "depth limit" in error or "recursion" in error:
        return "too_deep", f"payload nests deeper than {MAX_DEPTH} levels"
    if "UTF-8" in error:
        return "invalid_utf8", error
    return "invalid_json", error


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


def _count_keys(value: Any, depth_left: int = MAX_DEPTH) -> int:
    """Keys of all objects in ``value``; raises ``too_deep`` past ``MAX_DEPTH`` levels."""
    if isinstance(value, dict):
        children: Any = value.values()
        keys = len(value)
    elif isinstance(value, list):
        children, keys = value, 0
    else:
        return 0
    if depth_left == 0:
        raise PayloadError("too_deep", f"payload nests deeper than {MAX_DEPTH} levels")
    for child in children:
        if isinstance(child, dict | list):
            keys += _count_keys(child, depth_left - 1)
    return keys


def _seq(value: Any) -> int | None:
    if value is None:
        return None
    if not seq_ok(value):
        raise PayloadError("bad_seq", f"seq must be a non-negative integer, got {value!r}")
    return value


def _reading_from_object(obj: dict[str, Any], in_pack: bool) -> RawReading:
    values = dict(obj)  # the reserved keys are popped, the rest are quantities
    ts = values.pop("ts", None)
    ts_ns = None if ts is None else to_ns(ts)
    seq = _seq(values.pop("seq", None))
    sensor_id = values.pop("sensor", None)
    if in_pack and (not isinstance(sensor_id, str) or not sensor_id):
        raise PayloadError("bad_pack", "each pack reading needs a 'sensor' id string")
    if not in_pack and sensor_id is not None:
        raise PayloadError("bad_shape", "'sensor' belongs in gateway packs only")
    if "values" in values:
        nested = values.pop("values")
        if values:
            raise PayloadError("bad_shape", f"unexpected keys beside 'values': {list(values)[:5]}")
        if not isinstance(nested, dict):
            raise PayloadError("bad_shape", "'values' must be an object")
        values = nested
    if not values:
        raise PayloadError("no_values", "reading carries no values")
    return RawReading(values=values, ts_ns=ts_ns, seq=seq, sensor_id=sensor_id)


_SENML_LABELS = frozenset(JSON_TO_CBOR)
_NATIVE_KEYS = frozenset({"values", "ts", "seq", "sensor"})


def is_senml(items: list[Any]) -> bool:
    """A SenML pack: its first record has a SenML label (RFC 8428 Table 1; a pack may open
    with ``bver`` or ``bu`` alone) and none of the native shapes' own keys."""
    first = items[0] if items else None
    return (
        isinstance(first, dict)
        and not _SENML_LABELS.isdisjoint(first)
        and _NATIVE_KEYS.isdisjoint(first)
    )


def is_cbor_array(payload: bytes) -> bool:
    """A CBOR array starts with major type 4 (0x80-0x9f), a byte no JSON text starts with."""
    return bool(payload) and 0x80 <= payload[0] <= 0x9F


def decode_senml_cbor(
    payload: bytes, senml: SenmlContext, now_ns: int, *, max_bytes: int = 256 * 1024
) -> Decoded:
    """A SenML CBOR pack (RFC 8428 §6, ``application/senml+cbor``)."""
    if len(payload) > max_bytes:
        raise PayloadError("oversize", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    return to_readings(resolve_pack(loads_cbor(payload), now_ns), senml)


def decode_payload(
    payload: bytes,
    *,
    max_bytes: int = 256 * 1024,
    senml: SenmlContext | None = None,
    now_ns: int | None = None,
) -> Decoded:
    """Decode one MQTT payload. A message-level fault (not JSON, too big, too deep) raises
    ``PayloadError``; a bad item among several is returned in ``rejects``, so the good
    readings of the same message are kept. SenML names are resolved through ``senml``
    (the registry's names and the publishing device); without it SenML is refused.
    ``now_ns`` is what SenML's relative times are relative to (default: the clock)."""
    if senml is not None and is_cbor_array(payload):
        return decode_senml_cbor(payload, senml, _now(now_ns), max_bytes=max_bytes)
    doc = parse_json(payload, max_bytes)
    if isinstance(doc, dict):
        if "readings" in doc:
            return _decode_items(_pack_items(doc), in_pack=True, base_ts=doc.get("ts"))
        return Decoded([_reading_from_object(doc, in_pack=False)], [])
    if isinstance(doc, list):
        if len(doc) > MAX_READINGS_PER_MESSAGE:
            raise PayloadError("too_many", f"{len(doc)} readings in one message")
        if not doc:
            raise PayloadError("no_values", "empty array")
        if is_senml(doc):
            if senml is None:
                raise PayloadError("bad_shape", "SenML is not accepted on this path")
            return to_readings(resolve_pack(doc, _now(now_ns)), senml)
        return _decode_items(doc, in_pack=False, base_ts=None)
    raise PayloadError("bad_shape", f"payload is a JSON {type(doc).__name__}, not an object")


def _now(now_ns: int | None) -> int:
    return time.time_ns() if now_ns is None else now_ns


def _pack_items(doc: dict[str, Any]) -> list[Any]:
    readings = doc["readings"]
    if not isinstance(readings, list) or not readings:
        raise PayloadError("bad_pack", "'readings' must be a non-empty array")
    if len(readings) > MAX_READINGS_PER_MESSAGE:
        raise PayloadError("too_many", f"{len(readings)} readings in one pack")
    return readings


def _decode_items(items: list[Any], *, in_pack: bool, base_ts: Any) -> Decoded:
    out = Decoded([], [])
    for index, item in enumerate(items):
        sensor = item.get("sensor") if isinstance(item, dict) else None
        sensor_id = sensor if isinstance(sensor, str) else None
        try:
            if not isinstance(item, dict):
                raise PayloadError("bad_shape", "array items must be objects")
            reading = _reading_from_object(item, in_pack=in_pack)
            if reading.ts_ns is None and base_ts is not None:
                reading.ts_ns = to_ns(base_ts)
        except PayloadError as exc:
            # Kept past this frame, its traceback would tie the frame (and with it every
            # item's error) into a cycle that only the cyclic GC frees: 10,000 refused items
            # of one message were megabytes left for a late full collection.
            exc.__traceback__ = None
            out.rejects.append(ItemReject(index, sensor_id, exc))
            continue
        out.readings.append(reading)
    return out
