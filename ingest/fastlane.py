"""The ingest fast lane: well-formed messages straight from JSON to line protocol.

Nearly every message a city's sensors send is well formed: a flat object, an array of them
(one device's batch, as HTTP pushes carry) or a gateway pack of flat objects whose values
are in range, with an integer timestamp. And a sensor sends
the same keys in the same order, reading after reading. So for each sensor type and key
order ("shape") the lane compiles one small function that checks every value against the
catalogue's constants and writes the line, with orjson writing the fields when they are
all floats and booleans. Anything else (a bad value, an RFC 3339 time, SenML, nesting, a
possible duplicate key, a shape past the cap) makes the lane step aside, and the message
takes the general path (codec → validation → line protocol), which decides and explains
every rejection. So the lane can only be faster, never different: tests/test_fastlane.py
checks its output equals the general path's over generated messages. Its checks are
compiled from the same rules the general path applies: the catalogue's quantities and
``sensornet.rules`` (reserved keys, seq, timestamp units, the accepted time window).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson

from sensornet.catalogue import ID_RE, RESERVED_FIELD_IDS, Catalogue, SensorType
from sensornet.codec import MAX_READINGS_PER_MESSAGE, is_senml
from sensornet.errors import LineProtocolError
from sensornet.lineprotocol import encode_field_value, series_head
from sensornet.registry.store import DeviceInfo
from sensornet.rules import (
    MAX_FUTURE_NS,
    MAX_PAST_NS,
    MILLIS_BELOW,
    READING_KEYS,
    SECONDS_BELOW,
    SEQ_LIMIT,
)
from sensornet.unknown_keys import KeyLabels

# The keys a reading may carry beside its quantities, and the tag keys of every series.
_READING_KEYS = READING_KEYS | RESERVED_FIELD_IDS
_TAG_KEYS = frozenset({"sensor_id", "subdistrict"})
_SEQ_LIMIT = SEQ_LIMIT  # int64, InfluxDB's integer
SHAPES_PER_TYPE = 256  # past this (a sender varying its keys), readings go the general way

_FLOAT, _INT, _BOOL, _CHOICE = range(4)
# quantity id -> (min, max, kind, encoded allowed strings)
FieldRules = dict[str, tuple[float, float, int, dict[str, str]]]
Line = tuple[str, int | None]  # a line and the reading's seq
ShapeLine = Callable[[dict[str, Any], str, int, int], Line | None]
# a shape's line writer and the keys of it its type does not know (counted, not stored)
Shape = tuple[ShapeLine, tuple[str, ...]]
Unknown = list[tuple[str, tuple[str, ...]]]  # (sensor id, unknown keys) of a message


class Out(Protocol):
    lines: list[str]
    stored: list[tuple[str, int | None]]
    unknown_keys: Counter[tuple[str, str]]


def field_rules(sensor_type: SensorType) -> FieldRules:
    """Numbers with a closed range, booleans and closed sets of strings, under plain names
    (they go into compiled code); free strings go the general way."""
    rules: FieldRules = {}
    for q in sensor_type.quantities.values():
        if not ID_RE.match(q.id) or q.id in _READING_KEYS or q.id in _TAG_KEYS:
            continue
        if q.kind == "float" and q.min is not None and q.max is not None:
            rules[q.id] = (q.min, q.max, _FLOAT, {})
        elif q.kind == "int" and q.min is not None and q.max is not None:
            if q.min >= -_SEQ_LIMIT and q.max < _SEQ_LIMIT:  # int64, so always encodable
                rules[q.id] = (q.min, q.max, _INT, {})
        elif q.kind == "bool":
            rules[q.id] = (0, 0, _BOOL, {})
        elif q.kind == "string" and q.allowed is not None:
            try:
                choices = {v: encode_field_value(q.id, v) for v in q.allowed}
            except LineProtocolError:
                continue
            rules[q.id] = (0, 0, _CHOICE, choices)
    return rules


@dataclass(frozen=True, slots=True)
class _Plan:
    device: DeviceInfo
    publishers: frozenset[str]  # device.publishers, looked up once
    head: str
    rules: FieldRules
    known: frozenset[str]  # the type's quantities: any other key is unknown to it
    shapes: dict[tuple[str, ...], Shape | None]  # shared by the sensors of a type


class FastLane:
    """Appends to the caller's lists, and takes back what it appended when it steps aside."""

    def __init__(
        self,
        catalogue: Catalogue,
        lookup: Callable[[str], DeviceInfo | None],
        max_bytes: int,
        labels: KeyLabels | None = None,
    ) -> None:
        self._lookup = lookup
        self._max_bytes = max_bytes
        self._rules = {t.id: field_rules(t) for t in catalogue.types.values()}
        self._plans: dict[str, _Plan] = {}
        self._shapes: dict[str, dict[tuple[str, ...], Shape | None]] = {}
        self._known = {t.id: frozenset(t.quantities) for t in catalogue.types.values()}
        self._labels = labels or KeyLabels()
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
        shapes = self._shapes.setdefault(device.type, {})
        known = self._known[device.type]
        plan = self._plans[sensor_id] = _Plan(device, device.publishers, head, rules, known, shapes)
        return plan

    def _load(self, payload: bytes) -> Any:
        """The decoded document, or ``None`` for the general path to explain."""
        if len(payload) > self._max_bytes:
            return None
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None

    def readings(
        self, payload: bytes, device_id: str, now_ns: int, arrival_ns: int, out: Out
    ) -> bool:
        """A one-sensor message into ``out``; ``False`` (and nothing added) if it steps aside."""
        doc = self._load(payload)
        if type(doc) is list:
            return self._array(doc, payload, device_id, now_ns, arrival_ns, out)
        if type(doc) is not dict or "sensor" in doc or payload.count(b":") != len(doc):
            return False
        plan = self._plans.get(device_id) or self._plan(device_id)
        if plan is None:
            return False
        unknown: Unknown = []
        line = _write(doc, plan, now_ns, arrival_ns, unknown)
        if line is None:
            return False
        out.lines.append(line[0])
        out.stored.append((device_id, line[1]))
        if unknown:
            self._count(out, unknown)
        return True

    def _count(self, out: Out, unknown: Unknown) -> None:
        """Unknown keys of a message taken, counted as the general path counts them."""
        label = self._labels.label
        counts = out.unknown_keys
        for sensor_id, keys in unknown:
            for key in keys:
                counts[(sensor_id, label(sensor_id, key))] += 1

    def _array(
        self, items: list[Any], payload: bytes, device_id: str, now_ns: int, arrival_ns: int,
        out: Out,
    ) -> bool:  # fmt: skip
        """An array of one sensor's readings (not SenML), each stamped as the general path
        stamps the readings of a message: arrival + its index."""
        if not items or len(items) > MAX_READINGS_PER_MESSAGE or is_senml(items):
            return False
        plan = self._plans.get(device_id) or self._plan(device_id)
        if plan is None:
            return False
        lines, stored = out.lines, out.stored
        start = len(lines)
        keys = 0
        unknown: Unknown = []
        for index, item in enumerate(items):
            line = None
            if type(item) is dict and "sensor" not in item:
                keys += len(item)  # before the line writer takes ts and seq out
                line = _write(item, plan, now_ns, arrival_ns + index, unknown)
            if line is None:
                del lines[start:], stored[start:]
                return False
            lines.append(line[0])
            stored.append((device_id, line[1]))
        if payload.count(b":") != keys:  # a colon in a string, or a duplicate key
            del lines[start:], stored[start:]
            return False
        if unknown:
            self._count(out, unknown)
        return True

    def pack(self, payload: bytes, gateway_id: str, now_ns: int, arrival_ns: int, out: Out) -> bool:
        """A gateway pack into ``out``; ``False`` (and nothing added) if it steps aside."""
        doc = self._load(payload)
        if type(doc) is not dict or len(doc) != 2 or "gw" not in doc:
            return False
        items = doc.get("readings")
        if type(items) is not list or not items or len(items) > MAX_READINGS_PER_MESSAGE:
            return False
        lines, stored = out.lines, out.stored
        start = len(lines)
        keys = 2
        plans = self._plans
        unknown: Unknown = []
        sensor_id: Any = None
        for index, item in enumerate(items):
            line = None
            if type(item) is dict:
                sensor_id = item.get("sensor")
                if type(sensor_id) is str:
                    plan = plans.get(sensor_id) or self._plan(sensor_id)
                    if plan is not None and gateway_id in plan.publishers:
                        keys += len(item)  # before the line writer takes ts, seq, sensor out
                        line = _write(item, plan, now_ns, arrival_ns + index, unknown)
            if line is None:
                del lines[start:], stored[start:]
                return False
            lines.append(line[0])
            stored.append((sensor_id, line[1]))
        if payload.count(b":") != keys:  # a colon in a string, or a duplicate key
            del lines[start:], stored[start:]
            return False
        if unknown:
            self._count(out, unknown)
        return True


def _write(
    reading: dict[str, Any], plan: _Plan, now_ns: int, arrival_ns: int, unknown: Unknown
) -> Line | None:
    """The reading's line, its unknown keys appended to ``unknown`` (the caller counts
    them once the whole message is taken)."""
    keys = tuple(reading)
    try:
        shape = plan.shapes[keys]
    except KeyError:
        if len(plan.shapes) >= SHAPES_PER_TYPE:
            return None
        shape = plan.shapes[keys] = compile_shape(keys, plan.rules, plan.known)
    if shape is None:
        return None
    line = shape[0](reading, plan.head, now_ns, arrival_ns)
    if line is not None and shape[1]:
        unknown.append((plan.device.id, shape[1]))
    return line


_SHAPE_GLOBALS = {
    "dumps": orjson.dumps,
    "TABLE": bytes.maketrans(b":", b"="),  # "key":value -> key=value, once quotes are gone
    "QUOTE": b'"',
    "SEQ_LIMIT": _SEQ_LIMIT,
    "SECONDS_BELOW": SECONDS_BELOW,  # the magnitude rule of sensornet.timestamps
    "MILLIS_BELOW": MILLIS_BELOW,
    "MAX_PAST_NS": MAX_PAST_NS,
    "MAX_FUTURE_NS": MAX_FUTURE_NS,
}


def compile_shape(
    keys: tuple[str, ...], rules: FieldRules, known: frozenset[str] = frozenset()
) -> Shape | None:
    """The line writer for readings with exactly these keys in this order, or ``None``
    when the shape is not the lane's. The writer answers ``None`` for any value it does
    not take, and the reading goes the general way (which re-decodes the payload). Keys
    that are no quantity of the type (``known``) nor reserved are left out of the line,
    whatever their value, and returned to be counted, as validation does."""
    quantities = [k for k in keys if k in rules]
    unknown = tuple(k for k in keys if k not in known and k not in _READING_KEYS)
    taken = ("ts", "seq", "sensor", *unknown)
    if not quantities or any(k not in rules and k not in taken for k in keys):
        return None
    code = ["def line(r, head, now_ns, arrival_ns):"]
    namespace = dict(_SHAPE_GLOBALS)
    fields = []  # each field's part of an f-string, when orjson cannot write them all
    for n, key in enumerate(quantities):
        low, high, kind, choices = rules[key]
        v = f"v{n}"
        code.append(f"    {v} = r[{key!r}]")
        if kind == _FLOAT:  # an integer is taken too, as the float it stands for
            code += [
                f"    if type({v}) is float:",
                f"        if not {float(low)!r} <= {v} <= {float(high)!r}:",
                "            return None",
                f"    elif type({v}) is int and {float(low)!r} <= {v} <= {float(high)!r}:",
                f"        r[{key!r}] = {v} = float({v})",
                "    else:",
                "        return None",
            ]
            fields.append(f"{key}={{dumps({v}).decode()}}")
            continue
        if kind == _INT:
            test = f"type({v}) is not int or not {low!r} <= {v} <= {high!r}"
            fields.append(f"{key}={{{v}}}i")
        elif kind == _BOOL:
            test = f"type({v}) is not bool"
            fields.append(f"{key}={{'true' if {v} else 'false'}}")
        else:
            namespace[f"CHOICES{n}"] = choices
            test = f"type({v}) is not str or {v} not in CHOICES{n}"
            fields.append(f"{key}={{CHOICES{n}[{v}]}}")
        code += [f"    if {test}:", "        return None"]
    if "seq" in keys:
        code += [
            "    seq = r['seq']",
            "    if type(seq) is not int or not 0 <= seq < SEQ_LIMIT:",
            "        return None",
        ]
    if "ts" in keys:  # integer seconds or milliseconds (sensornet.timestamps)
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
        code.append("    ts_ns = arrival_ns")
    code += [
        "    if not now_ns - MAX_PAST_NS <= ts_ns <= now_ns + MAX_FUTURE_NS:",
        "        return None",
    ]
    if all(rules[k][2] in (_FLOAT, _BOOL) for k in quantities):
        # floats and booleans: orjson writes them all, in payload order, as "key":value
        code += [f"    del r[{k!r}]" for k in keys if k not in rules]
        code.append("    text = dumps(r)[1:-1].translate(TABLE, QUOTE).decode()")
    else:
        code.append(f'    text = f"{",".join(fields)}"')
    if "seq" in keys:
        code.append('    return f"{head} {text},seq={seq}i {ts_ns}", seq')
    else:
        code.append('    return f"{head} {text} {ts_ns}", None')
    exec("\n".join(code), namespace)  # noqa: S102 - plain catalogue ids and constants only
    return cast(ShapeLine, namespace["line"]), unknown
