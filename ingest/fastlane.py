"""The ingest fast lane: well-formed messages straight from JSON to line protocol.

Nearly every message a city's sensors send is well formed: a flat object or a gateway pack
of flat objects, float and int values inside their ranges, integer timestamps. For those,
decoding, validating and encoding are fused into one pass over each reading, with each
sensor's series head and each type's field rules prepared once. Anything else (a bad
value, an RFC 3339 time, SenML, nesting, a possible duplicate key) makes the lane answer
``None``, and the message takes the general path (codec → validation → line protocol),
which decides and explains every rejection. So the lane can only be faster, never
different: tests/test_fastlane.py checks its output equals the general path's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson

from sensornet.catalogue import Catalogue, SensorType
from sensornet.codec import MAX_READINGS_PER_MESSAGE
from sensornet.errors import LineProtocolError
from sensornet.lineprotocol import encode_field_value, escape_name, format_float, series_head
from sensornet.registry.store import DeviceInfo
from sensornet.validation import MAX_FUTURE_NS, MAX_PAST_NS

# The keys a reading may carry beside its quantities, and the tag keys of every series.
_READING_KEYS = frozenset({"ts", "seq", "sensor", "values", "time"})
_TAG_KEYS = frozenset({"sensor_id", "subdistrict"})
_JSON_TO_FIELDS = bytes.maketrans(b":", b"=")
_SEQ_LIMIT = 2**63  # int64, InfluxDB's integer
_SECONDS_BELOW = 10**11  # the same magnitude rule as sensornet.timestamps
_MILLIS_BELOW = 10**14

_FLOAT, _INT, _BOOL, _CHOICE = range(4)
# quantity id -> (escaped "key=", min, max, kind, encoded allowed strings)
FieldRules = dict[str, tuple[str, float, float, int, dict[str, str]]]


class Out(Protocol):
    lines: list[str]
    stored: list[tuple[str, int | None]]


def field_rules(sensor_type: SensorType) -> FieldRules:
    """Numbers with a closed range, booleans and closed sets of strings; free strings go
    the general way."""
    rules: FieldRules = {}
    for q in sensor_type.quantities.values():
        if q.id in _READING_KEYS or q.id in _TAG_KEYS:
            continue
        prefix = escape_name("field key", q.id) + "="
        if q.kind == "float" and q.min is not None and q.max is not None:
            rules[q.id] = (prefix, q.min, q.max, _FLOAT, {})
        elif q.kind == "int" and q.min is not None and q.max is not None:
            if q.min >= -_SEQ_LIMIT and q.max < _SEQ_LIMIT:  # int64, so always encodable
                rules[q.id] = (prefix, q.min, q.max, _INT, {})
        elif q.kind == "bool":
            rules[q.id] = (prefix, 0, 0, _BOOL, {})
        elif q.kind == "string" and q.allowed is not None:
            try:
                choices = {v: encode_field_value(q.id, v) for v in q.allowed}
            except LineProtocolError:
                continue
            rules[q.id] = (prefix, 0, 0, _CHOICE, choices)
    return rules


@dataclass(frozen=True, slots=True)
class _Plan:
    device: DeviceInfo
    head: str
    rules: FieldRules
    plain_keys: bool  # every field key is written as is (no escaping)
    shapes: dict[tuple[str, ...], ShapeLine | None]  # shared by the sensors of a type


class FastLane:
    """Appends to the caller's lists, and takes back what it appended when it steps aside."""

    def __init__(
        self, catalogue: Catalogue, lookup: Callable[[str], DeviceInfo | None], max_bytes: int
    ) -> None:
        self._lookup = lookup
        self._max_bytes = max_bytes
        self._rules = {t.id: field_rules(t) for t in catalogue.types.values()}
        self._plans: dict[str, _Plan] = {}
        self._shapes: dict[str, dict[tuple[str, ...], ShapeLine | None]] = {}
        self._registry_version: object = None

    def registry_seen(self, version: object) -> None:
        """Plans hold registry facts (status, gateway, tags): start over when it changed."""
        if version != self._registry_version:
            self._plans.clear()
            self._registry_version = version

    def _plan(self, sensor_id: str) -> _Plan | None:
        device = self._lookup(sensor_id)
        if device is None or not device.reporting:
            return None
        rules = self._rules.get(device.type)
        if rules is None:
            return None
        try:
            head = series_head(
                device.type, (("sensor_id", device.id), ("subdistrict", device.subdistrict))
            )
        except LineProtocolError:
            return None
        plain = all(rule[0] == key + "=" for key, rule in rules.items())
        shapes = self._shapes.setdefault(device.type, {})
        plan = self._plans[sensor_id] = _Plan(device, head, rules, plain, shapes)
        return plan

    def readings(
        self, payload: bytes, device_id: str, now_ns: int, arrival_ns: int, out: Out
    ) -> bool:
        """A one-sensor message into ``out``; ``False`` (and nothing added) if it steps aside."""
        if len(payload) > self._max_bytes:
            return False
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if type(doc) is not dict or "sensor" in doc or payload.count(b":") != len(doc):
            return False
        plan = self._plans.get(device_id) or self._plan(device_id)
        if plan is None:
            return False
        line = _write(doc, plan, now_ns, arrival_ns)
        if line is None:
            return False
        out.lines.append(line[0])
        out.stored.append((device_id, line[1]))
        return True

    def pack(self, payload: bytes, gateway_id: str, now_ns: int, arrival_ns: int, out: Out) -> bool:
        """A gateway pack into ``out``; ``False`` (and nothing added) if it steps aside."""
        if len(payload) > self._max_bytes:
            return False
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if type(doc) is not dict or len(doc) != 2 or "gw" not in doc:
            return False
        items = doc.get("readings")
        if type(items) is not list or not items or len(items) > MAX_READINGS_PER_MESSAGE:
            return False
        lines, stored = out.lines, out.stored
        start = len(lines)
        keys = 2
        plans = self._plans
        sensor_id: Any = None
        for index, item in enumerate(items):
            line = None
            if type(item) is dict:
                sensor_id = item.get("sensor")
                if type(sensor_id) is str:
                    plan = plans.get(sensor_id) or self._plan(sensor_id)
                    if plan is not None and (
                        plan.device.gateway_id == gateway_id or sensor_id == gateway_id
                    ):
                        keys += len(item)  # before _line takes ts, seq and sensor out
                        line = _write(item, plan, now_ns, arrival_ns + index)
            if line is None:
                del lines[start:], stored[start:]
                return False
            lines.append(line[0])
            stored.append((sensor_id, line[1]))
        if payload.count(b":") != keys:  # a colon in a string, or a duplicate key
            del lines[start:], stored[start:]
            return False
        return True


def _write(
    reading: dict[str, Any], plan: _Plan, now_ns: int, arrival_ns: int
) -> tuple[str, int | None] | None:
    keys = tuple(reading)
    try:
        shape = plan.shapes[keys]
    except KeyError:
        shape = compile_shape(keys, plan.rules) if plan.plain_keys else None
        if len(plan.shapes) < SHAPES_PER_TYPE:
            plan.shapes[keys] = shape
    if shape is not None:
        line = shape(reading, plan.head, now_ns, arrival_ns)
        if line is not None:
            return line
    return _line(reading, plan, now_ns, arrival_ns)


def _line(
    reading: dict[str, Any], plan: _Plan, now_ns: int, arrival_ns: int
) -> tuple[str, int | None] | None:
    """One reading's line and seq when every value is plain and valid, else ``None``.
    Takes ``ts``, ``seq`` and ``sensor`` out of ``reading``."""
    rules = plan.rules
    ts: Any = None
    seq: Any = None
    fields = 0
    floats_and_bools = plan.plain_keys
    for key, value in reading.items():
        rule = rules.get(key)
        if rule is None:
            if key == "ts":
                ts = value
            elif key == "seq":
                seq = value
            elif key != "sensor":
                return None
            continue
        fields += 1
        kind = rule[3]
        if kind == _FLOAT and type(value) is float:
            if not rule[1] <= value <= rule[2]:  # False for NaN too
                return None
        elif kind != _BOOL or type(value) is not bool:
            floats_and_bools = False
    if not fields:
        return None
    if seq is not None and (type(seq) is not int or not 0 <= seq < _SEQ_LIMIT):
        return None
    ts_ns = _accepted_ns(arrival_ns if ts is None else ts, ts is None, now_ns)
    if ts_ns is None:
        return None
    if len(reading) != fields:
        if ts is not None:
            del reading["ts"]
        if seq is not None:
            del reading["seq"]
        if len(reading) != fields:
            del reading["sensor"]
    if floats_and_bools:
        # The common case: orjson writes every field at once, in payload order, as
        # "key":value; the keys are plain names, so dropping quotes and turning colons
        # into equals signs makes it line protocol (floats in the same text as
        # sensornet.lineprotocol writes them).
        text: str | None = orjson.dumps(reading)[1:-1].translate(_JSON_TO_FIELDS, b'"').decode()
    else:
        text = _fields_text(reading, rules)
    if text is None:
        return None
    if seq is not None:
        text += f",seq={seq}i"
    return f"{plan.head} {text} {ts_ns}", seq


def _accepted_ns(ts: Any, is_ns: bool, now_ns: int) -> int | None:
    """A device time (integer seconds or ms) or an arrival time (ns) as ns, if it is
    inside the accepted window."""
    if is_ns:
        ts_ns = ts
    elif type(ts) is not int or ts <= 0:
        return None
    elif ts < _SECONDS_BELOW:
        ts_ns = ts * 1_000_000_000
    elif ts < _MILLIS_BELOW:
        ts_ns = ts * 1_000_000
    else:
        return None
    if not now_ns - MAX_PAST_NS <= ts_ns <= now_ns + MAX_FUTURE_NS:
        return None
    return int(ts_ns)


# --- shapes: one compiled line writer per sensor type and key order ---------------------
#
# Sensors of a type send the same keys in the same order, reading after reading. For each
# such shape whose quantities are all floats and booleans, a small function is compiled
# that checks each value with constants instead of looking its rule up: a third of the
# lane's time per reading. What it cannot take it answers ``None`` for, before changing
# anything, and the reading takes ``_line``.

ShapeLine = Callable[[dict[str, Any], str, int, int], "tuple[str, int | None] | None"]
SHAPES_PER_TYPE = 256  # past this (a sender varying its keys), readings take _line
_SHAPE_GLOBALS = {
    "dumps": orjson.dumps,
    "TABLE": _JSON_TO_FIELDS,
    "QUOTE": b'"',
    "SEQ_LIMIT": _SEQ_LIMIT,
    "SECONDS_BELOW": _SECONDS_BELOW,
    "MILLIS_BELOW": _MILLIS_BELOW,
    "MAX_PAST_NS": MAX_PAST_NS,
    "MAX_FUTURE_NS": MAX_FUTURE_NS,
}


def compile_shape(keys: tuple[str, ...], rules: FieldRules) -> ShapeLine | None:
    quantities = [k for k in keys if k in rules]
    if not quantities or any(k not in rules and k not in ("ts", "seq", "sensor") for k in keys):
        return None
    code = ["def line(r, head, now_ns, arrival_ns):"]
    for key in quantities:
        prefix, low, high, kind, _ = rules[key]
        if prefix != key + "=" or kind not in (_FLOAT, _BOOL):
            return None
        if kind == _FLOAT:
            code += [
                f"    v = r[{key!r}]",
                f"    if type(v) is not float or not {float(low)!r} <= v <= {float(high)!r}:",
                "        return None",
            ]
        else:
            code += [f"    if type(r[{key!r}]) is not bool:", "        return None"]
    if "seq" in keys:
        code += [
            "    seq = r['seq']",
            "    if type(seq) is not int or not 0 <= seq < SEQ_LIMIT:",
            "        return None",
        ]
    if "ts" in keys:  # _accepted_ns, inline
        code += [
            "    ts_ns = r['ts']",
            "    if type(ts_ns) is not int or ts_ns <= 0:",
            "        return None",
            "    if ts_ns < SECONDS_BELOW:",
            "        ts_ns *= 1000000000",
            "    elif ts_ns < MILLIS_BELOW:",
            "        ts_ns *= 1000000",
            "    else:",
            "        return None",
        ]
    else:
        code += ["    ts_ns = arrival_ns"]
    code += [
        "    if not now_ns - MAX_PAST_NS <= ts_ns <= now_ns + MAX_FUTURE_NS:",
        "        return None",
    ]
    code += [f"    del r[{k!r}]" for k in keys if k not in rules]
    code += ["    text = dumps(r)[1:-1].translate(TABLE, QUOTE).decode()"]
    if "seq" in keys:
        code += ['    return f"{head} {text},seq={seq}i {ts_ns}", seq']
    else:
        code += ['    return f"{head} {text} {ts_ns}", None']
    namespace = dict(_SHAPE_GLOBALS)
    exec("\n".join(code), namespace)  # noqa: S102 - names and constants from the catalogue
    return cast(ShapeLine, namespace["line"])


def _fields_text(reading: dict[str, Any], rules: FieldRules) -> str | None:
    """Fields one by one, for readings with integers or strings."""
    parts = []
    for key, value in reading.items():
        prefix, low, high, kind, choices = rules[key]
        value_type = type(value)
        if kind == _FLOAT:
            if value_type is float:
                parts.append(prefix + format_float(value))
            elif value_type is int and low <= value <= high:
                parts.append(prefix + format_float(float(value)))
            else:
                return None
        elif kind == _INT:
            if value_type is not int or not low <= value <= high:
                return None
            parts.append(f"{prefix}{value}i")
        elif kind == _BOOL:
            if value_type is not bool:
                return None
            parts.append(prefix + ("true" if value else "false"))
        else:
            encoded = choices.get(value) if value_type is str else None
            if encoded is None:
                return None
            parts.append(prefix + encoded)
    return ",".join(parts)
