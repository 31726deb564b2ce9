"""The envelope lane: a network server's well-formed uplink straight from its JSON to the
reading's line and its ``device_health`` line.

A LoRaWAN network server (ChirpStack v4, The Things Stack v3) wraps every reading in a
~700-byte envelope: device info, gateway metadata, modulation. The general path
(``sensornet.lorawan.formats``) turns it into an ``Uplink`` record, resolves the device by
DevEUI, completes the values with the type's codec and key map, validates them and
encodes both lines with the generic encoder: about ten times the cost of a native message.
Nearly every uplink is alike, though: the same device on the same topic, its payload
decoded (by the network server, or by the type's codec) into the same keys in the same
order. So the lane keeps, per topic, what the registry says of its device (series heads,
type rules, the application and device names the body must repeat), and per sensor type,
application and key order ("value shape") the key map's routing of each key and the line
writer that ``ingest.fastlane.compile_shape`` compiles from the catalogue's rules. A
message then costs one orjson parse, a few type checks and two f-strings. The network
servers' HTTP integrations (ChirpStack's, ``?event=up``; a The Things Stack webhook) post
the same bodies on one route for every device: there the plan is kept per DevEUI.

Anything unusual steps aside to the general path, which decides and explains it: another
event than ``up`` (or more in an HTTP route's query), a status or simulated uplink, a body
that disagrees with its topic, a missing or malformed field, a value the compiled rules do not
take, nesting, raw bytes the type has no codec for or that do not fit it, a shape past the
cap. The field checks are the envelope parser's own (``sensornet.lorawan.envelope``) where
they decide anything, the key routing is ``KeyMap.route``, the value checks the native
lane's compiled shapes, and health goes through the pipeline's own sampling: the lane can
only be faster, never different (tests/test_envelope_lane.py compares it with the general
path over generated envelopes of both networks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from orjson import dumps

from ingest.fastlane import SHAPES_PER_TYPE, Out, ShapeLine, compile_shape, field_rules
from sensornet.catalogue import RESERVED_FIELD_IDS, Catalogue, SensorType
from sensornet.errors import LineProtocolError, PayloadError
from sensornet.health import HEALTH_MEASUREMENT
from sensornet.lineprotocol import format_float, series_head
from sensornet.lorawan.envelope import (
    F_CNT_MAX,
    MAX_DECODED_KEYS,
    body_dev_eui,
    frm_bytes,
    parse_topic,
    radio_summary,
    receipt_time,
)
from sensornet.lorawan.formats import HTTP_PREFIX
from sensornet.lorawan.keymap import DROP, HEALTH, KeyMap
from sensornet.registry.store import DeviceInfo
from sensornet.rules import MAX_FUTURE_NS, MAX_PAST_NS, READING_KEYS

FORMATS = frozenset({"chirpstack", "tts"})  # the formats of sensornet.lorawan.formats
MAX_TOPICS = 200_000  # plans kept per topic before starting over (a topic per device)
MAX_VALUE_SHAPE_SETS = 10_000  # (sensor type, application) pairs with value shapes
_NOT_A_NAME = READING_KEYS | RESERVED_FIELD_IDS  # a payload key so named is the general path's


class EnvelopeOut(Out, Protocol):
    health: list[str]


@dataclass(frozen=True, slots=True)
class _ValueShape:
    """A decoded payload's keys in one order, as the key map routes them."""

    line: ShapeLine  # the reading's line from the routed values and ``seq``
    unknown: tuple[str, ...]  # readings keys the type does not know: counted, not stored
    moves: tuple[tuple[str, str], ...] | None  # (key, quantity); None: the payload as is
    health: tuple[tuple[str, str], ...]  # (key, health field)
    loose: tuple[str, ...]  # keys no compiled check sees: their values must not nest


ValueShapes = dict[tuple[str, ...], _ValueShape | None]


@dataclass(frozen=True, slots=True)
class _Topic:
    """One device's uplink topic, and what its body must repeat."""

    device: DeviceInfo
    sensor_type: SensorType
    head: str  # the reading's measurement and tags
    health_head: str
    dev_eui: str  # as the body writes it (ChirpStack: lower case, as in the topic)
    application: str  # the topic's application id
    device_name: str  # The Things Stack: the topic's device id
    shapes: ValueShapes  # shared by the devices of one type and application


class EnvelopeLane:
    """Appends to the caller's lists only when it takes the whole message."""

    def __init__(
        self,
        catalogue: Catalogue,
        resolve: Callable[[str, str], DeviceInfo | None],
        keymap: KeyMap,
        max_bytes: int,
        label: Callable[[str, str], str],
        health_due: Callable[[str, int], bool],
    ) -> None:
        self._catalogue = catalogue
        self._resolve = resolve
        self._keymap = keymap
        self._max_bytes = max_bytes
        self._label = label
        self._health_due = health_due
        self._rules = {t.id: field_rules(t) for t in catalogue.types.values()}
        self._known = {t.id: frozenset(t.quantities) for t in catalogue.types.values()}
        self._topics: dict[str, _Topic] = {}
        self._bodies: dict[tuple[str, str], _Topic] = {}  # (format, DevEUI): HTTP routes
        self._shapes: dict[tuple[str, str], ValueShapes] = {}
        self._registry_version: object = None

    def registry_seen(self, version: object) -> None:
        """Topic plans hold registry facts (status, type, tags): start over when it changed."""
        if version != self._registry_version or len(self._topics) + len(self._bodies) > MAX_TOPICS:
            self._topics.clear()
            self._bodies.clear()
            self._registry_version = version
        if len(self._shapes) > MAX_VALUE_SHAPE_SETS:
            self._shapes.clear()  # applications named by topics: bounded, as topics are

    def take(self, fmt: str, topic: str, payload: bytes, now_ns: int, out: EnvelopeOut) -> bool:
        """One network-server message (its MQTT topic, or the HTTP input's route) into
        ``out``; ``False`` (and nothing added) if it steps aside."""
        if len(payload) > self._max_bytes:
            return False
        http = topic.startswith(HTTP_PREFIX)
        if http and topic.partition("?")[2] not in ("", "event=up"):
            return False  # another event, or more in the query: the general path reads it
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if type(doc) is not dict:
            return False
        try:
            if fmt == "chirpstack":
                return self._chirpstack(doc, topic, http, now_ns, out)
            return self._tts(doc, topic, http, now_ns, out)
        except PayloadError:  # a field the general path will refuse, with its reason
            return False

    def _plan(self, fmt: str, topic: str, dev_eui: Any) -> _Topic | None:
        info = parse_topic(topic)
        if info is None or info.network != fmt or info.event != "up" or type(dev_eui) is not str:
            return None
        if fmt == "chirpstack" and dev_eui != info.device:
            return None  # the general path compares them canonically, and explains
        if fmt == "tts" and not info.application:
            return None  # the body must name one (``parse_tts``)
        return self._device_plan(dev_eui, info.application, info.device)

    def _device_plan(self, dev_eui: str, application: str, device_name: str) -> _Topic | None:
        try:
            canonical = body_dev_eui(dev_eui, "")
        except PayloadError:
            return None
        device = self._resolve("deveui", canonical)
        if device is None or not device.reporting:
            return None
        sensor_type = self._catalogue.types.get(device.type)
        if sensor_type is None or not self._rules[device.type]:
            return None
        tags = (("sensor_id", device.id), ("subdistrict", device.subdistrict))
        try:
            head = series_head(sensor_type.measurement, tags)
            health_head = series_head(HEALTH_MEASUREMENT, tags)
        except LineProtocolError:
            return None
        shapes = self._shapes.setdefault((device.type, application), {})
        return _Topic(device, sensor_type, head, health_head, dev_eui, application,
                      device_name, shapes)  # fmt: skip

    def _topic(self, fmt: str, topic: str, dev_eui: Any) -> _Topic | None:
        """The topic's plan. Only plans are kept, never a refusal to make one: that may be
        the message's fault (a body naming another DevEUI, an unregistered one), and a
        topic must not stay off the lane for one odd message."""
        plan = self._topics.get(topic)
        if plan is None:
            plan = self._plan(fmt, topic, dev_eui)
            if plan is None:
                return None
            self._topics[topic] = plan
        return plan if dev_eui == plan.dev_eui else None

    def _by_body(self, fmt: str, dev_eui: Any) -> _Topic | None:
        """An HTTP integration's device (ChirpStack's HTTP integration, a The Things Stack
        webhook): one route for every device, so the body alone names it, by DevEUI."""
        if type(dev_eui) is not str:
            return None
        plan = self._bodies.get((fmt, dev_eui))
        if plan is None:
            plan = self._device_plan(dev_eui, "", "")
            if plan is None:
                return None
            self._bodies[(fmt, dev_eui)] = plan
        return plan

    def _shapes_of(self, plan: _Topic, application: str) -> ValueShapes:
        if application == plan.application:
            return plan.shapes
        return self._shapes.setdefault((plan.device.type, application), {})

    def _chirpstack(
        self, doc: dict[str, Any], topic: str, http: bool, now_ns: int, out: EnvelopeOut
    ) -> bool:
        """ChirpStack v4 ``up`` (``parse_chirpstack``): the fields it checks, checked alike;
        on MQTT the body must repeat its topic's DevEUI and application (``_check_topic``)."""
        info = doc.get("deviceInfo")
        if type(info) is not dict:
            return False
        application = info.get("applicationId", "")
        if http:
            plan = self._by_body("chirpstack", info.get("devEui"))
            if plan is None or type(application) is not str:
                return False
        else:
            plan = self._topic("chirpstack", topic, info.get("devEui"))
            if plan is None or application != plan.application:
                return False
        if (
            type(info.get("deviceName", "")) is not str
            or type(doc.get("deduplicationId", "")) is not str
        ):
            return False
        received = receipt_time(doc, "time", "")
        f_cnt = doc.get("fCnt")
        f_port = doc.get("fPort")
        radio = radio_summary(doc.get("rxInfo"), "rxInfo")
        values = self._values(plan, doc.get("object"), doc, "data")
        return self._store(plan, application, received, f_cnt, f_port, radio, values,
                           now_ns, out)  # fmt: skip

    def _tts(
        self, doc: dict[str, Any], topic: str, http: bool, now_ns: int, out: EnvelopeOut
    ) -> bool:
        """The Things Stack v3 ``ApplicationUp`` (``parse_tts``), checked alike; on MQTT
        the body must repeat its topic's device id and application (``_check_topic``)."""
        ids = doc.get("end_device_ids")
        up = doc.get("uplink_message")
        if type(ids) is not dict or type(up) is not dict:
            return False
        if doc.get("simulated", False) is not False:
            return False  # refused as simulated (or not a boolean) by the general path
        app_ids = ids.get("application_ids")
        if http:
            plan = self._by_body("tts", ids.get("dev_eui"))
            if plan is None or type(ids.get("device_id", "")) is not str:
                return False
            application = ""
            if type(app_ids) is dict:
                named = app_ids.get("application_id")
                if type(named) is not str or not named:
                    return False
                application = named
        else:
            plan = self._topic("tts", topic, ids.get("dev_eui"))
            if plan is None or ids.get("device_id") != plan.device_name:
                return False
            application = plan.application
            if type(app_ids) is not dict or app_ids.get("application_id") != application:
                return False
        received = receipt_time(up, "received_at", "")
        if received is None:
            received = receipt_time(doc, "received_at", "")
        f_cnt = up.get("f_cnt")
        f_port = up.get("f_port")
        radio = radio_summary(up.get("rx_metadata"), "rx_metadata")
        values = self._values(plan, up.get("decoded_payload"), up, "frm_payload")
        return self._store(plan, application, received, f_cnt, f_port, radio, values,
                           now_ns, out)  # fmt: skip

    def _values(
        self, plan: _Topic, decoded: Any, holder: dict[str, Any], data_key: str
    ) -> dict[str, Any] | None:
        """The payload's values: the network server's decoding (``object`` /
        ``decoded_payload``) when it ran one, else the type's codec over the bytes, as
        ``sensornet.lorawan.values.uplink_values`` decides; ``None`` to step aside."""
        if decoded is not None and type(decoded) is not dict:
            return None
        data = frm_bytes(holder, data_key, "", self._max_bytes) if data_key in holder else b""
        if decoded:
            return decoded
        codec = plan.sensor_type.codec
        if not data or codec is None:
            return None  # no payload, or bytes without a codec: the general path's refusal
        return codec.decode(data)

    def _store(
        self,
        plan: _Topic,
        application: str,
        received: int | None,
        f_cnt: Any,
        f_port: Any,
        radio: tuple[int, float | None, float | None],
        values: dict[str, Any] | None,
        now_ns: int,
        out: EnvelopeOut,
    ) -> bool:
        if values is None or received is None:
            return False
        if not now_ns - MAX_PAST_NS <= received <= now_ns + MAX_FUTURE_NS:
            return False
        if f_cnt is None:
            f_cnt = 0  # omitted at 0 (proto3 JSON)
        elif type(f_cnt) is not int or not 0 <= f_cnt <= F_CNT_MAX:
            return False
        if f_port is not None and (type(f_port) is not int or not 0 <= f_port <= 255):
            return False
        keys = tuple(values)
        shapes = self._shapes_of(plan, application)
        try:
            shape = shapes[keys]
        except KeyError:
            if len(shapes) >= SHAPES_PER_TYPE:
                return False
            shape = shapes[keys] = self._compile(keys, plan.device.type, application)
        if shape is None:
            return False
        for key in shape.loose:
            if type(values[key]) in (dict, list):
                return False  # the general path flattens or refuses nesting
        if shape.moves is None:
            reading = values
        else:
            reading = {quantity: values[key] for key, quantity in shape.moves}
        reading["seq"] = f_cnt
        line = shape.line(reading, plan.head, now_ns, received)
        if line is None:
            return False
        device_id = plan.device.id
        if self._health_due(device_id, received):
            health = _health(plan.health_head, f_cnt, f_port, radio, values, shape, received)
            out.health.append(health)
        out.lines.append(line[0])
        out.stored.append((device_id, f_cnt))
        if shape.unknown:
            counts, label = out.unknown_keys, self._label
            for key in shape.unknown:
                counts[(device_id, label(device_id, key))] += 1
        return True

    def _compile(self, keys: tuple[str, ...], type_id: str, application: str) -> _ValueShape | None:
        """The value shape of ``keys``, or ``None`` when it is not the lane's: a key the key
        map routes onto another's quantity or health field, a name reserved for the
        reading's own keys, no quantity the rules take (``compile_shape``)."""
        if not keys or len(keys) > MAX_DECODED_KEYS:
            return None
        rules, known = self._rules[type_id], self._known[type_id]
        moves: list[tuple[str, str]] = []
        health: list[tuple[str, str]] = []
        loose: list[str] = []
        for key in keys:
            where, target = self._keymap.route(key, type_id, application)
            if where == DROP:
                loose.append(key)
            elif where == HEALTH:
                if any(target == field for _, field in health):
                    return None
                health.append((key, target))
                loose.append(key)
            else:
                if target in _NOT_A_NAME or any(target == q for _, q in moves):
                    return None
                moves.append((key, target))
                if target not in rules:
                    loose.append(key)
        compiled = compile_shape((*(q for _, q in moves), "seq"), rules, known)
        if compiled is None:
            return None
        as_is = len(moves) == len(keys) and all(key == q for key, q in moves)
        return _ValueShape(compiled[0], compiled[1], None if as_is else tuple(moves),
                           tuple(health), tuple(loose))  # fmt: skip


def _health(
    head: str,
    f_cnt: int,
    f_port: int | None,
    radio: tuple[int, float | None, float | None],
    values: dict[str, Any],
    shape: _ValueShape,
    ts_ns: int,
) -> str:
    """The ``device_health`` line ``sensornet.health.health_line`` writes for the fields
    ``sensornet.lorawan.values`` gathers: radio first, then the payload's health values
    that are finite numbers (an integer as the float it stands for) or booleans."""
    gateways, rssi, snr = radio
    if gateways and rssi is not None and snr is not None and f_port is not None:
        text = (  # heard, with its metrics, on an application port: nearly every uplink
            f"{head} f_cnt={f_cnt}i,gateways={gateways}i,rssi={dumps(rssi).decode()},"
            f"snr={dumps(snr).decode()},f_port={f_port}i"
        )
    else:
        text = f"{head} f_cnt={f_cnt}i"
        if gateways:
            text += f",gateways={gateways}i"
        if rssi is not None:
            text += ",rssi=" + format_float(rssi)
        if snr is not None:
            text += ",snr=" + format_float(snr)
        if f_port is not None:
            text += f",f_port={f_port}i"
    for key, field in shape.health:
        value = values[key]
        kind = type(value)
        if kind is float:
            if value - value == 0:  # finite
                text += f",{field}={format_float(value)}"
        elif kind is int:
            text += f",{field}={format_float(float(value))}"
        elif kind is bool:
            text += f",{field}={'true' if value else 'false'}"
    return f"{text} {ts_ns}"
