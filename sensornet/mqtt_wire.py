"""MQTT on the wire: every packet the platform builds or cuts by hand, and every use of
gmqtt's private attributes, in one place.

Why by hand at all: gmqtt is the fastest asyncio MQTT 5 client we measured, but its
per-message machinery (a package object, a debug log call and three dispatches per
PUBLISH; a task per message for acknowledgement after processing) was a third of the
ingester's time per reading (docs/decisions.md). So the ingester cuts PUBLISH packets out
of each socket read itself (``FrameReader``) and sends its PUBACKs in one write per batch,
and the load generators write pre-built PUBLISH packets. Everything else still goes
through gmqtt.

The gmqtt side (``GmqttHooks``) touches private attributes that gmqtt does not promise to
keep: ``pyproject.toml`` pins gmqtt to ``>=0.8,<0.9``, and ``tests/test_mqtt_wire.py``
holds ``FrameReader`` to gmqtt's own frame and PUBLISH parser on the same bytes, so an
upgrade that changes them fails there first (docs/decisions.md names the versions tested).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gmqtt.mqtt.package import Package
from gmqtt.storage import PersistentStorage

_U16 = struct.Struct("!H")
PUBACK_SIZE = 4
#: one PUBACK (MQTT 3.1.1 and 5 with reason "success") per packet id
PUBACKS = [struct.pack("!BBH", 0x40, 2, mid) for mid in range(65536)]
DISCONNECT = b"\xe0\x00"
MAX_PACKET_ID = 65_535


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property length)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return _U16.pack(len(s)) + s


def connect_packet(client_id: str, username: str, password: str, keepalive: int = 60) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, with username and password."""
    body = _str(b"MQTT") + bytes([4, 0xC2]) + _U16.pack(keepalive)
    body += _str(client_id.encode()) + _str(username.encode()) + _str(password.encode())
    return b"\x10" + varint(len(body)) + body


def connack_code(packet: bytes) -> int | None:
    """The return code of a 4-byte CONNACK, or ``None`` if it is not one."""
    if len(packet) != 4 or packet[0] != 0x20:
        return None
    return packet[3]


def publish_packet(
    topic: bytes, payload: bytes, packet_id: int | None, properties: bytes | None = None
) -> bytes:
    """QoS 1 with a packet id, QoS 0 without; ``properties`` makes it MQTT 5 (as a broker
    sends it to an MQTT 5 client, ``b""`` for none)."""
    body = _str(topic)
    if packet_id is not None:
        body += _U16.pack(packet_id)
    if properties is not None:
        body += varint(len(properties)) + properties
    body += payload
    return (b"\x30" if packet_id is None else b"\x32") + varint(len(body)) + body


def count_pubacks(data: bytes) -> tuple[int, bytes]:
    """PUBACKs at the start of ``data`` and the bytes left over; ``ValueError`` if the
    broker sent anything else (a publisher that only publishes expects nothing else)."""
    whole = len(data) // PUBACK_SIZE * PUBACK_SIZE
    for i in range(0, whole, PUBACK_SIZE):
        if data[i] != 0x40:
            raise ValueError(f"unexpected packet type {data[i]:#x} from the broker")
    return whole // PUBACK_SIZE, data[whole:]


@dataclass(slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    mid: int | None  # None for QoS 0: nothing to acknowledge
    connection: object  # the connection it arrived on; acks go only to that one
    arrived_ns: int = 0  # the platform's clock: the timestamp of readings without one
    # how to decode the payload: "" the native JSON shapes (the topic's kind decides), else
    # a format of sensornet.formats; only inputs set it, never a device (ingest/inputs)
    fmt: str = ""


def parse_publish(data: bytes, start: int, end: int, qos: int) -> tuple[str, int | None, bytes]:
    """Topic, packet id and payload of the PUBLISH body ``data[start:end]``. Properties are
    skipped: we need none (topic aliases are off, we announce no alias maximum)."""
    topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
    topic = data[start + 2 : topic_end].decode("utf-8", "replace")
    mid = None
    if qos:
        mid = (data[topic_end] << 8) | data[topic_end + 1]
        topic_end += 2
    length, shift, at = 0, 0, topic_end
    while True:  # MQTT 5 property length, a variable byte integer
        byte = data[at]
        at += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return topic, mid, data[at + length : end]


Deliver = Callable[[list[InboundMessage], int], None]


class FrameReader:
    """Cuts a byte stream from the broker into packets: QoS 0/1 PUBLISHes become
    ``InboundMessage``s handed over as one list per read, anything else goes to ``other``
    (in order: a run of messages is delivered before the packet that follows it).

    Each message gets its own arrival time in nanoseconds, one more per 8 payload bytes
    than the last (more than a message can hold readings), so readings stamped with their
    arrival never share a timestamp in a series."""

    def __init__(self, deliver: Deliver, other: Callable[[int, bytes], None]) -> None:
        self.deliver = deliver
        self.other = other
        self.next_arrival = 0

    def arrival(self, payload_bytes: int) -> int:
        arrived = max(time.time_ns(), self.next_arrival)
        self.next_arrival = arrived + (payload_bytes >> 3) + 1
        return arrived

    def read(self, data: bytes, connection: object) -> int:
        """Bytes consumed from ``data`` (the rest is an unfinished packet), or -1 for a
        malformed packet (the connection must then be dropped)."""
        messages: list[InboundMessage] = []
        received = 0  # payload bytes: the ingester's measure of what it holds
        size = len(data)
        pos = 0
        arrived = max(time.time_ns(), self.next_arrival)
        while size - pos >= 2:
            cmd = data[pos]
            at, length, shift, complete = pos + 1, 0, 0, False
            while at < size:  # remaining length, a variable byte integer
                byte = data[at]
                at += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    return -1
            end = at + length
            if not complete or end > size:
                break  # the rest of this packet is still on its way
            if cmd >> 4 == 3 and not cmd & 4:  # PUBLISH at QoS 0 or 1
                try:
                    message = _message(data, at, end, cmd, connection, arrived)
                except IndexError:  # shorter than its own fields say
                    return -1
                messages.append(message)
                arrived += ((end - at) >> 3) + 1
                received += len(message.payload)
            else:
                if messages:  # keep the order of everything the broker sent
                    self.deliver(messages, received)
                    messages, received = [], 0
                self.other(cmd, data[at:end])
            pos = end
        self.next_arrival = arrived
        if messages:
            self.deliver(messages, received)
        return pos


def _message(
    data: bytes, at: int, end: int, cmd: int, connection: object, arrived: int
) -> InboundMessage:
    topic_end = at + 2 + ((data[at] << 8) | data[at + 1])
    if cmd & 2 and topic_end + 2 < end and data[topic_end + 2] == 0:
        # QoS 1 without properties: the common case, inline
        return InboundMessage(
            data[at + 2 : topic_end].decode("utf-8", "replace"),
            data[topic_end + 3 : end],
            (data[topic_end] << 8) | data[topic_end + 1],
            connection,
            arrived,
        )
    qos = (cmd >> 1) & 1
    topic, mid, payload = parse_publish(data, at, end, qos)
    return InboundMessage(topic, payload, mid, connection if qos else None, arrived)


class GmqttHooks:
    """The private parts of one ``gmqtt.Client`` the platform uses, named for what they do."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def connection(self) -> Any:
        """The current connection object (``None`` before the first connect)."""
        return self.client._connection

    def _open_connection(self) -> Any:
        connection = self.client._connection
        return None if connection is None or connection.is_closing() else connection

    def read_frames_with(self, reader: FrameReader) -> None:
        """Cut this connection's incoming bytes with ``reader`` instead of gmqtt's frame
        loop (call on every connect: each connection has its own protocol object). Bytes of
        a connection gmqtt has already replaced still go gmqtt's way (it drops them)."""
        connection = self.client._connection
        protocol = connection._protocol
        handler = self.client._package_handler

        def other(cmd: int, body: bytes) -> None:
            connection.put_package(Package(cmd, body))

        def read_packet(data: bytes) -> int:
            if handler.current_connection is not connection:
                return int(type(protocol)._read_packet(protocol, data))
            used = reader.read(data, connection)
            connection._last_data_in = time.monotonic()  # gmqtt's keep-alive bookkeeping
            return used

        reader.other = other
        protocol._read_packet = read_packet

    def on_publish_packet(self, handle: Callable[[int, bytes, object], None]) -> None:
        """PUBLISH packets that still come through gmqtt's own loop (those read before
        ``read_frames_with`` took over) go to ``handle(cmd, body, connection)``; QoS 2, which
        the platform never asks for, stays gmqtt's."""
        handler = self.client._package_handler
        generic = handler._handle_publish_packet

        def publish(cmd: int, raw: bytes) -> None:
            if (cmd >> 1) & 3 == 2:
                generic(cmd, raw)
            else:
                handle(cmd, raw, self.client._connection)

        handler._handle_publish_packet = publish

    def on_puback(self, handle: Callable[[int], None]) -> None:
        """Our own PUBACK handling (gmqtt's logs twice per PUBACK)."""
        handler = self.client._package_handler
        ids = handler.id_generator

        def puback(cmd: int, packet: bytes) -> None:
            mid = (packet[0] << 8) | packet[1]
            ids.free_id(mid)
            handle(mid)

        handler._handle_puback_packet = puback

    def resend_unacked_on_every_connect(self) -> None:
        """On a CONNACK without a session, gmqtt empties its in-flight store: every QoS 1
        message the broker had not acknowledged is gone without a word (the simulator lost
        659 of 12,551 readings to a 3 s broker restart that way, issue 23). A device built
        to lose nothing sends them again in the new session, as it does when the session
        is present; so the store is replayed on every connect and emptied only by
        PUBACKs. The broker may then get a message twice (at least once, as QoS 1 says)."""
        client = self.client
        replays: set[asyncio.Future[None]] = set()  # referenced until done

        def replay() -> None:
            task = asyncio.ensure_future(client._resend_qos_messages())
            replays.add(task)
            task.add_done_callback(replays.discard)

        client._package_handler._clear_qos_callback = replay

    def next_packet_id(self) -> int:
        """A packet id from gmqtt's own pool, so its PUBACK handling stays in step."""
        return int(self.client._connection._protocol.id_generator.next_id())

    def send(self, data: bytes) -> bool:
        """Raw packets on the open connection; ``False`` if there is none."""
        connection = self._open_connection()
        if connection is None:
            return False
        connection.send_package(data)
        return True

    def pause_reading(self) -> bool:
        """Stop reading the socket (backpressure). gmqtt reads through an asyncio
        StreamReader, which resumes a transport it paused itself as soon as its buffer
        runs dry (measured: 1.5 MB read on while "paused"); so the pause is taken over from
        it, and only ``resume_reading`` reads on."""
        connection = self._open_connection()
        if connection is None:
            return False
        connection._transport.pause_reading()
        connection._protocol._stream_reader._paused = False
        return True

    def resume_reading(self) -> None:
        connection = self._open_connection()
        if connection is not None:
            connection._transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the Last Will."""
        connection = self.client._connection
        if connection is not None:
            connection._transport.abort()


class CountingStorage(PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store (its ``persistent_storage``), counting PUBACKs and waking a
    sender waiting for room; it reads the store's private ``_messages``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.acked = 0
        self.room = asyncio.Event()
        self.room.set()

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        if len(self._messages) >= self.limit:
            self.room.clear()

    def remove_message_by_mid(self, mid: int) -> None:
        if mid in self._messages:
            self.acked += 1
        super().remove_message_by_mid(mid)
        if len(self._messages) < self.limit:
            self.room.set()

    @property
    def in_flight(self) -> int:
        return len(self._messages)


__all__ = [
    "DISCONNECT",
    "PUBACKS",
    "CountingStorage",
    "FrameReader",
    "GmqttHooks",
    "InboundMessage",
    "connack_code",
    "connect_packet",
    "count_pubacks",
    "parse_publish",
    "publish_packet",
    "varint",
]
