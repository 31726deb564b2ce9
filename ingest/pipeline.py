"""From a batch of MQTT messages to line protocol and rejections. No I/O, so it is
tested and benchmarked alone; the service around it owns the sockets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.fastlane import FastLane
from sensornet.catalogue import Catalogue
from sensornet.codec import decode_payload
from sensornet.errors import LineProtocolError, PayloadError
from sensornet.lineprotocol import encode_point
from sensornet.mqtt_wire import InboundMessage
from sensornet.registry.store import DeviceInfo
from sensornet.topics import DeviceTopic, parse_topic
from sensornet.validation import Rejection, validate

log = logging.getLogger("sensornet.ingest")


@dataclass(frozen=True, slots=True)
class Reject:
    """A reading (or a whole message) refused, with everything needed to explain it."""

    device_id: str | None
    reason: str
    detail: str
    topic: str
    payload: bytes
    seq: int | None = None


@dataclass(slots=True)
class BatchResult:
    lines: list[str] = field(default_factory=list)
    stored: list[tuple[str, int | None]] = field(default_factory=list)  # (sensor id, seq)
    rejects: list[Reject] = field(default_factory=list)
    status: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Pipeline:
    catalogue: Catalogue
    lookup: Callable[[str], DeviceInfo | None]
    topic_prefix: str
    max_payload_bytes: int = 256 * 1024
    use_fast_lane: bool = True
    is_gateway: Callable[[str], bool] = lambda device_id: False  # may publish its status
    _fast: FastLane = field(init=False)

    def __post_init__(self) -> None:
        self._fast = FastLane(self.catalogue, self.lookup, self.max_payload_bytes)

    def process(
        self, messages: Sequence[InboundMessage], now_ns: int, registry_version: object = None
    ) -> BatchResult:
        """``registry_version`` changes whenever the devices behind ``lookup`` do.

        Bad input is refused with a reason, never raised. Should a message still raise (a
        bug), the batch is processed again one message at a time, and the one that raises
        becomes an ``internal_error`` dead letter: logged with its traceback, and neither
        the batch nor the ingester stalls on it."""
        self._fast.registry_seen(registry_version)
        try:
            return self._process(messages, now_ns)
        except Exception:
            return self._process_each(messages, now_ns)

    def _process_each(self, messages: Sequence[InboundMessage], now_ns: int) -> BatchResult:
        out = BatchResult()
        for m in messages:
            try:
                one = self._process([m], now_ns)
            except Exception as exc:
                log.exception("pipeline error on %.200r; kept as a dead letter", m.topic)
                parsed = parse_topic(self.topic_prefix, m.topic)
                detail = f"{type(exc).__name__}: {exc}"[:500]
                device = parsed.device_id if parsed else None
                out.rejects.append(Reject(device, "internal_error", detail, m.topic, m.payload))
                continue
            out.lines += one.lines
            out.stored += one.stored
            out.rejects += one.rejects
            out.status += one.status
        return out

    def _process(self, messages: Sequence[InboundMessage], now_ns: int) -> BatchResult:
        out = BatchResult()
        fast = self.use_fast_lane
        readings, pack = self._fast.readings, self._fast.pack
        for m in messages:
            parsed = parse_topic(self.topic_prefix, m.topic)
            if fast and parsed is not None:
                kind = parsed.kind
                arrived = m.arrived_ns or now_ns
                if kind == "readings":
                    if readings(m.payload, parsed.device_id, now_ns, arrived, out):
                        continue
                elif kind == "pack" and pack(m.payload, parsed.device_id, now_ns, arrived, out):
                    continue
            self._process_one(m, parsed, now_ns, out)
        return out

    def _process_one(
        self, m: InboundMessage, parsed: DeviceTopic | None, now_ns: int, out: BatchResult
    ) -> None:
        """The general path: every check, every reason."""
        if parsed is None:
            out.rejects.append(
                Reject(None, "bad_topic", "topic outside the layout", m.topic, m.payload)
            )
            return
        if parsed.kind == "status":
            if self.lookup(parsed.device_id) is None and not self.is_gateway(parsed.device_id):
                out.rejects.append(
                    Reject(
                        parsed.device_id,
                        "unknown_sensor",
                        "status of an unregistered device",
                        m.topic,
                        m.payload,
                    )
                )
            else:
                out.status.append((parsed.device_id, m.payload))
            return
        try:
            decoded = decode_payload(m.payload, max_bytes=self.max_payload_bytes)
        except PayloadError as exc:
            out.rejects.append(Reject(parsed.device_id, exc.reason, exc.detail, m.topic, m.payload))
            return
        for item in decoded.rejects:
            out.rejects.append(
                Reject(
                    item.sensor_id or parsed.device_id,
                    item.error.reason,
                    item.error.detail,
                    m.topic,
                    m.payload,
                )
            )
        is_pack = parsed.kind == "pack"
        for index, raw in enumerate(decoded.readings):
            sensor_id = raw.sensor_id or parsed.device_id
            if not is_pack and raw.sensor_id not in (None, parsed.device_id):
                out.rejects.append(
                    Reject(
                        parsed.device_id,
                        "foreign_sensor",
                        f"reading names {raw.sensor_id!r:.80} on the topic of {parsed.device_id}",
                        m.topic,
                        m.payload,
                        raw.seq,
                    )
                )
                continue
            if is_pack and raw.sensor_id is None:
                out.rejects.append(
                    Reject(
                        parsed.device_id,
                        "bad_pack",
                        "pack reading without a sensor id",
                        m.topic,
                        m.payload,
                        raw.seq,
                    )
                )
                continue
            device = self.lookup(sensor_id)
            # A pack may carry only the readings of sensors attached to its gateway (or the
            # gateway's own): any device may publish on its own pack topic.
            if (
                is_pack
                and device is not None
                and sensor_id != parsed.device_id
                and device.gateway_id != parsed.device_id
            ):
                out.rejects.append(
                    Reject(
                        sensor_id,
                        "foreign_gateway",
                        f"{sensor_id} is attached to {device.gateway_id}, not {parsed.device_id}",
                        m.topic,
                        m.payload,
                        raw.seq,
                    )
                )
                continue
            # A reading without its own time gets its arrival time, kept distinct per reading
            # (same series + same time would overwrite in InfluxDB).
            arrival = (m.arrived_ns or now_ns) + index
            result = validate(raw, device, self.catalogue, now_ns, sensor_id, arrival)
            if isinstance(result, Rejection):
                out.rejects.append(
                    Reject(sensor_id, result.reason, result.detail, m.topic, m.payload, raw.seq)
                )
                continue
            try:
                line = encode_point(
                    result.sensor_type.measurement, result.tags(), result.fields, result.ts_ns
                )
            except LineProtocolError as exc:
                out.rejects.append(
                    Reject(sensor_id, "unencodable", str(exc), m.topic, m.payload, raw.seq)
                )
                continue
            out.lines.append(line)
            out.stored.append((sensor_id, result.seq))  # not the reading: memory is bounded
