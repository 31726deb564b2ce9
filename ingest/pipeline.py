"""From a batch of messages to line protocol and rejections. No I/O, so it is tested and
benchmarked alone; the service around it owns the sockets. It never knows which input a
message came from: its topic (the native layout) and its ``fmt`` (``sensornet.formats``)
say what it is (docs/decisions.md, "Inputs")."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.envelope_lane import FORMATS as ENVELOPE_FORMATS
from ingest.envelope_lane import EnvelopeLane
from ingest.fastlane import FastLane
from sensornet.catalogue import Catalogue
from sensornet.codec import decode_payload
from sensornet.errors import LineProtocolError, PayloadError
from sensornet.formats import decoder_for
from sensornet.health import health_line
from sensornet.lineprotocol import encode_point
from sensornet.lorawan.keymap import load_keymap
from sensornet.mqtt_wire import InboundMessage
from sensornet.records import Decoded, RawReading
from sensornet.registry.store import DeviceInfo
from sensornet.senml_resolve import SenmlContext
from sensornet.topics import DeviceTopic, parse_topic
from sensornet.unknown_keys import KeyLabels
from sensornet.validation import Rejection, validate

log = logging.getLogger("sensornet.ingest")


UNKNOWN_DEVICE = "_unknown"  # the one device tag of every id the registry does not know
MAX_DETAIL = 200  # characters of a refusal's detail kept (each item of a pack has its own)
MAX_ID = 80  # characters of an id named but not booked under (registry ids have at most 64)


@dataclass(slots=True)
class Reject:
    """A reading (or a whole message) refused, with everything needed to explain it.

    ``device_id`` is the device it is booked under (see ``Pipeline.book``): a registered
    id, or ``UNKNOWN_DEVICE``; ``named`` is the id the topic or the item named when it is
    not that one. ``topic`` and ``payload`` are the message's own objects, shared by the
    rejects of its items, never copied. ``count`` consecutive items of one message refused
    alike (no ``seq``, the same detail) share one reject, each still its own dead letter:
    ``[1,1,...]`` is 10,000 refused items in 20 kB, and memory must not grow with them."""

    device_id: str
    reason: str
    detail: str
    topic: str
    payload: bytes
    seq: int | None = None
    named: str | None = None
    count: int = 1


@dataclass(slots=True)
class BatchResult:
    lines: list[str] = field(default_factory=list)
    stored: list[tuple[str, int | None]] = field(default_factory=list)  # (sensor id, seq)
    rejects: list[Reject] = field(default_factory=list)
    status: list[tuple[str, bytes]] = field(default_factory=list)
    # device health lines (sensornet.health): written with the batch, not readings
    health: list[str] = field(default_factory=list)
    # (device, key label) -> readings stored without that unknown key (sensornet.unknown_keys)
    unknown_keys: Counter[tuple[str, str]] = field(default_factory=Counter)

    def refused_by_reason(self) -> Counter[str]:
        """Refused readings by reason."""
        out: Counter[str] = Counter()
        for reject in self.rejects:
            out[reject.reason] += reject.count
        return out


@dataclass
class Pipeline:
    catalogue: Catalogue
    lookup: Callable[[str], DeviceInfo | None]
    topic_prefix: str
    max_payload_bytes: int = 256 * 1024
    use_fast_lane: bool = True
    is_gateway: Callable[[str], bool] = lambda device_id: False  # may publish its status
    # a device named other than by its id (scheme, key): DeviceCache.resolve
    resolve: Callable[[str, str], DeviceInfo | None] = lambda scheme, key: None
    # at most one device_health point per device in this time (0: every one); the newest
    # time written per device, so a burst or a replayed backlog is sampled, not copied
    health_interval_ns: int = 0
    _health_at: dict[str, int] = field(init=False, default_factory=dict)
    _senml_memo: dict[tuple[str, str | None], tuple[DeviceInfo, str] | None] = field(
        init=False, default_factory=dict
    )
    _senml_version: object = field(init=False, default=None)
    _fast: FastLane = field(init=False)
    _envelopes: EnvelopeLane = field(init=False)
    _key_labels: KeyLabels = field(init=False, default_factory=KeyLabels)

    def __post_init__(self) -> None:
        self._fast = FastLane(self.catalogue, self.lookup, self.max_payload_bytes, self._key_labels)
        self._envelopes = EnvelopeLane(
            self.catalogue, self.resolve, load_keymap(), self.max_payload_bytes,
            self._key_labels.label, self._health_due,
        )  # fmt: skip

    def process(
        self, messages: Sequence[InboundMessage], now_ns: int, registry_version: object = None
    ) -> BatchResult:
        """``registry_version`` changes whenever the devices behind ``lookup`` do.

        Bad input is refused with a reason, never raised. Should a message still raise (a
        bug), the batch is processed again one message at a time, and the one that raises
        becomes an ``internal_error`` dead letter: logged with its traceback, and neither
        the batch nor the ingester stalls on it."""
        self._fast.registry_seen(registry_version)
        self._envelopes.registry_seen(registry_version)
        if registry_version != self._senml_version or len(self._senml_memo) > 100_000:
            self._senml_memo.clear()  # SenML names resolved under another registry
            self._senml_version = registry_version
        try:
            return self._process(messages, now_ns)
        except Exception:
            return self._process_each(messages, now_ns)

    def book(self, publisher: str | None, named: str | None = None) -> tuple[str, str | None]:
        """The device a refusal is booked under (the dead letter's ``device`` tag), and the
        id to keep beside it when that is not the one named.

        The publisher (the topic's id) is the authenticated one. An item naming another
        sensor is booked under that sensor only when the publisher may carry its readings
        (``DeviceInfo.publishers``): nobody can write refusals into another device's
        account. Ids the registry does not know all share one tag, ``UNKNOWN_DEVICE``, so
        made-up ids cannot create series (docs/payloads.md). With no publisher, the message
        came by a route its input trusts as a whole (a network server, an integration, the
        Sensor.Community pull: their readings may name any registered sensor), so a refusal
        naming a registered sensor is that sensor's."""
        if named == publisher:
            named = None
        if publisher is None and named is not None and self.lookup(named) is not None:
            # no publisher: a format on a route its input trusts as a whole (a network
            # server's subscription), whose devices the registry resolved by their keys
            return named, None
        if named is not None and publisher is not None:
            device = self.lookup(named)
            if device is not None and publisher in device.publishers:
                return named, None
        if publisher is not None and (
            self.lookup(publisher) is not None or self.is_gateway(publisher)
        ):
            return publisher, named
        return UNKNOWN_DEVICE, publisher if named is None else named

    def _reject(
        self,
        out: BatchResult,
        m: InboundMessage,
        publisher: str | None,
        reason: str,
        detail: str,
        seq: int | None = None,
        named: str | None = None,
    ) -> None:
        device, raw = self.book(publisher, named)
        if raw is not None:
            raw = raw[:MAX_ID]
        detail = detail[:MAX_DETAIL]
        rejects = out.rejects
        if rejects and seq is None:
            last = rejects[-1]
            if (
                last.payload is m.payload
                and last.topic is m.topic
                and last.seq is None
                and (last.reason, last.detail, last.device_id, last.named)
                == (reason, detail, device, raw)
            ):
                last.count += 1
                return
        rejects.append(Reject(device, reason, detail, m.topic, m.payload, seq, raw))

    def _complete(
        self, raw: RawReading, device: DeviceInfo, ts_ns: int, out: BatchResult
    ) -> PayloadError | bool:
        """Type-dependent decoding (``RawReading.complete``) of a reporting device's
        reading; its health is kept whatever becomes of the reading. Returns the refusal,
        ``True`` when the reading goes on to validation (its values set), ``False`` for a
        record of health only. A device that may not report (or of a type gone from the
        catalogue) goes on to ``validate``, which says why."""
        complete = raw.complete
        sensor_type = self.catalogue.types.get(device.type)
        if sensor_type is None or not device.reporting or complete is None:
            return True
        done = complete(sensor_type)
        if done.health and self._health_due(device.id, ts_ns):
            try:
                out.health.append(health_line(device, done.health, ts_ns))
            except LineProtocolError:
                log.warning("device health of %s not encodable: %.200r", device.id, done.health)
        if done.error is not None:
            return done.error
        raw.values = done.values
        return done.reading

    def _health_due(self, sensor_id: str, ts_ns: int) -> bool:
        interval = self.health_interval_ns
        if interval <= 0:
            return True
        last = self._health_at.get(sensor_id)
        if last is not None and ts_ns < last + interval:
            return False
        self._health_at[sensor_id] = ts_ns
        return True

    def _process_each(self, messages: Sequence[InboundMessage], now_ns: int) -> BatchResult:
        out = BatchResult()
        for m in messages:
            try:
                one = self._process([m], now_ns)
            except Exception as exc:
                log.exception("pipeline error on %.200r; kept as a dead letter", m.topic)
                parsed = parse_topic(self.topic_prefix, m.topic)
                detail = f"{type(exc).__name__}: {exc}"
                publisher = parsed.device_id if parsed else None
                try:
                    self._reject(out, m, publisher, "internal_error", detail)
                except Exception:  # the registry lookup is what raised
                    out.rejects.append(
                        Reject(UNKNOWN_DEVICE, "internal_error", detail[:MAX_DETAIL],
                               m.topic, m.payload, None, publisher)
                    )  # fmt: skip
                continue
            out.lines += one.lines
            out.stored += one.stored
            out.rejects += one.rejects
            out.status += one.status
            out.health += one.health
            out.unknown_keys.update(one.unknown_keys)
        return out

    def _process(self, messages: Sequence[InboundMessage], now_ns: int) -> BatchResult:
        out = BatchResult()
        fast = self.use_fast_lane
        readings, pack = self._fast.readings, self._fast.pack
        envelope = self._envelopes.take
        for m in messages:
            parsed = parse_topic(self.topic_prefix, m.topic)
            if fast and parsed is not None and not m.fmt:
                kind = parsed.kind
                arrived = m.arrived_ns or now_ns
                if kind == "readings":
                    if readings(m.payload, parsed.device_id, now_ns, arrived, out):
                        continue
                elif kind == "pack" and pack(m.payload, parsed.device_id, now_ns, arrived, out):
                    continue
            elif (
                fast
                and parsed is None
                and m.fmt in ENVELOPE_FORMATS
                and envelope(m.fmt, m.topic, m.payload, now_ns, out)
            ):
                continue
            self._process_one(m, parsed, now_ns, out)
        return out

    def _process_one(
        self, m: InboundMessage, parsed: DeviceTopic | None, now_ns: int, out: BatchResult
    ) -> None:
        """The general path: every check, every reason."""
        if m.fmt:
            self._process_format(m, parsed, now_ns, out)
            return
        if parsed is None:
            self._reject(out, m, None, "bad_topic", "topic outside the layout")
            return
        publisher = parsed.device_id
        if parsed.kind == "status":
            if self.lookup(publisher) is None and not self.is_gateway(publisher):
                self._reject(
                    out, m, publisher, "unknown_sensor", "status of an unregistered device"
                )
            else:
                out.status.append((publisher, m.payload))
            return
        memo = None if self._senml_version is None else self._senml_memo
        senml = SenmlContext(self.catalogue, self._senml_name, self.lookup(publisher), memo)
        try:
            decoded = decode_payload(
                m.payload,
                max_bytes=self.max_payload_bytes,
                senml=senml,
                now_ns=m.arrived_ns or now_ns,
            )
        except PayloadError as exc:
            self._reject(out, m, publisher, exc.reason, exc.detail)
            return
        self._store(m, publisher, parsed.kind, decoded, now_ns, out)

    def _process_format(
        self, m: InboundMessage, parsed: DeviceTopic | None, now_ns: int, out: BatchResult
    ) -> None:
        """A message in a format of ``sensornet.formats``. On a device's native topic (the
        input authenticated that device) its readings must be the device's own or its
        gateway's sensors', as in a pack; on any other topic (a route the input trusts as
        a whole, e.g. a network server's subscription) they may name any registered device."""
        publisher = parsed.device_id if parsed is not None else None
        decoder = decoder_for(m.fmt)
        if decoder is None:
            self._reject(out, m, publisher, "unknown_format", f"no decoder for {m.fmt!r:.60}")
            return
        try:
            decoded = decoder(m.payload, m.topic, self.max_payload_bytes)
        except PayloadError as exc:
            self._reject(out, m, publisher, exc.reason, exc.detail)
            return
        self._store(m, publisher, "format", decoded, now_ns, out)

    def _senml_name(self, name: str) -> DeviceInfo | None:
        """The sensor a SenML name names: its registered ``senml_name``, else its id."""
        device = self.resolve("senml_name", name)
        return device if device is not None else self.lookup(name)

    def _device_of(
        self, raw: RawReading, publisher: str | None
    ) -> tuple[str | None, DeviceInfo | None, str | None]:
        """``(sensor id, device, raw name)`` of a reading: its named sensor (resolved
        through the registry when named in a scheme), else the publisher."""
        named = raw.sensor_id
        if named is None:
            return publisher, None if publisher is None else self.lookup(publisher), None
        if not raw.scheme:
            return named, self.lookup(named), named
        device = self.resolve(raw.scheme, named)
        raw_name = f"{raw.scheme}:{named}"
        return (device.id, device, raw_name) if device is not None else (None, None, raw_name)

    def _store(
        self,
        m: InboundMessage,
        publisher: str | None,
        kind: str,
        decoded: Decoded,
        now_ns: int,
        out: BatchResult,
    ) -> None:
        """Validate and encode decoded readings: ``kind`` is the topic's (``readings``,
        ``pack``) or ``format``, which decides whose readings the message may carry."""
        for item in decoded.rejects:
            error = item.error
            self._reject(out, m, publisher, error.reason, error.detail, item.seq, item.sensor_id)
        is_pack = kind == "pack"
        for index, raw in enumerate(decoded.readings):
            named = raw.sensor_id
            if kind == "readings" and named not in (None, publisher):
                detail = f"reading names {named!r:.80} on the topic of {publisher}"
                self._reject(out, m, publisher, "foreign_sensor", detail, raw.seq, named)
                continue
            if is_pack and named is None:
                detail = "pack reading without a sensor id"
                self._reject(out, m, publisher, "bad_pack", detail, raw.seq)
                continue
            resolved, device, raw_name = self._device_of(raw, publisher)
            if resolved is None:
                detail = (
                    f"no registered sensor is {raw_name!r:.80}"
                    if raw_name
                    else "the message names no sensor"
                )
                self._reject(out, m, publisher, "unknown_sensor", detail, raw.seq, raw_name)
                continue
            sensor_id = resolved
            # A pack may carry only the readings of sensors attached to its gateway (or the
            # gateway's own): any device may publish on its own pack topic. A format on a
            # device's topic is held to the same rule.
            if (
                kind != "readings"
                and publisher is not None
                and device is not None
                and publisher not in device.publishers
            ):
                detail = f"{sensor_id} is attached to {device.gateway_id}, not {publisher}"
                self._reject(out, m, publisher, "foreign_gateway", detail, raw.seq, sensor_id)
                continue
            # A reading without its own time gets its arrival time, kept distinct per reading
            # (same series + same time would overwrite in InfluxDB).
            arrival = (m.arrived_ns or now_ns) + index
            if raw.complete is not None and device is not None:
                outcome = self._complete(raw, device, raw.ts_ns or arrival, out)
                if isinstance(outcome, PayloadError):
                    self._reject(
                        out, m, publisher, outcome.reason, outcome.detail, raw.seq, sensor_id
                    )
                if outcome is not True:
                    continue  # refused, or a record of device health only
            result = validate(raw, device, self.catalogue, now_ns, sensor_id, arrival)
            if isinstance(result, Rejection):
                self._reject(out, m, publisher, result.reason, result.detail, raw.seq, sensor_id)
                continue
            try:
                line = encode_point(
                    result.sensor_type.measurement, result.tags(), result.fields, result.ts_ns
                )
            except LineProtocolError as exc:
                self._reject(out, m, publisher, "unencodable", str(exc), raw.seq, sensor_id)
                continue
            out.lines.append(line)
            out.stored.append((sensor_id, result.seq))  # not the reading: memory is bounded
            if result.unknown:
                label = self._key_labels.label
                for key in result.unknown:
                    out.unknown_keys[(sensor_id, label(sensor_id, key))] += 1
