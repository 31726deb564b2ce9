"""MQTT 5 subscription with acknowledgement after the write, on gmqtt.

gmqtt is the fastest asyncio MQTT 5 client we measured (docs/decisions.md), but it either
acks on receipt or acks when a per-message coroutine returns, which costs a task per
message. This shim takes the packet id instead and lets the pipeline send PUBACKs itself,
in one socket write per batch, once the batch is durable. Acks for messages that arrived
on an earlier connection are dropped: the broker redelivers those, and the rewrite is
idempotent (same series, same timestamp).

On the hot path it also replaces gmqtt's frame loop on its own connection: PUBLISH
packets are cut out of each socket read inline and handed over as one list, and every
other packet still goes to gmqtt. gmqtt's loop costs a package object, a log call and
three dispatches per message, which was a third of the ingester's time per reading.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Self

import gmqtt
from gmqtt.mqtt.package import Package

from sensornet.mqtt_tls import MqttTls

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
_PUBACKS = [_PUBACK.pack(0x40, 2, mid) for mid in range(65536)]  # one per packet id


@dataclass(slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    mid: int | None  # None for QoS 0: nothing to acknowledge
    connection: object  # the connection it arrived on; acks go only to that one
    arrived_ns: int = 0  # the platform's clock: the timestamp of readings without one


def _publish(data: bytes, start: int, end: int, qos: int) -> tuple[str, int | None, bytes]:
    """Topic, packet id and payload of the PUBLISH body ``data[start:end]``. We need no
    property (topic aliases are off: we announce no alias maximum), so they are skipped."""
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


class MqttSource:
    """Persistent QoS 1 session: fixed client id, clean start off, session expiry set."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        topic_filters: Sequence[str],
        on_messages: Callable[[list[InboundMessage], int], None],
        session_expiry_s: int,
        receive_maximum: int,
        await_subscription: bool = True,
        tls: MqttTls | None = None,
    ) -> None:
        """``await_subscription=False``: entering returns at CONNACK, and the caller awaits
        ``subscribed()`` while it consumes, since a queued backlog arrives before the SUBACK
        and may need consuming (and acking) for the SUBACK to get through."""
        self._await_subscription = await_subscription
        self._host, self._port = host, port
        self._tls = tls
        self._filters = list(topic_filters)
        self._deliver = on_messages
        # Readings without a timestamp get their message's arrival time (plus their index
        # in a pack): each message gets its own nanoseconds, one per 8 payload bytes (more
        # than it can hold readings), so no two readings of a series can share a time.
        self._next_arrival = 0
        self.connected_once = False
        self.paused = False
        self._client = gmqtt.Client(
            client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=session_expiry_s,
            receive_maximum=receive_maximum,
        )
        self._client.set_auth_credentials(username, password)
        self._client.on_message = self._on_generic
        self._client.on_subscribe = self._on_subscribe
        self._client.on_connect = self._on_connect
        self._subacks = 0
        self._subscribed = asyncio.Event()
        handler = self._client._package_handler
        self._generic_publish = handler._handle_publish_packet
        handler._handle_publish_packet = self._on_publish

    def _arrival(self, payload_bytes: int) -> int:
        arrived = max(time.time_ns(), self._next_arrival)
        self._next_arrival = arrived + (payload_bytes >> 3) + 1
        return arrived

    def _on_publish(self, cmd: int, raw: bytes) -> None:
        """A PUBLISH that came through gmqtt's own loop (before ours was installed)."""
        qos = (cmd >> 1) & 3
        if qos == 2:  # never subscribed at QoS 2; let gmqtt deal with the oddity
            self._generic_publish(cmd, raw)
            return
        topic, mid, payload = _publish(raw, 0, len(raw), qos)
        connection = self._client._connection if qos else None
        arrived = self._arrival(len(raw))
        self._deliver([InboundMessage(topic, payload, mid, connection, arrived)], len(payload))

    def _on_generic(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        """Messages gmqtt parsed itself (QoS 2, which we never ask for); it acks them."""
        arrived = self._arrival(len(payload))
        self._deliver([InboundMessage(topic, payload, None, None, arrived)], len(payload))
        return 0

    def _read_packets(self, protocol: Any, connection: Any, data: bytes) -> int:
        """gmqtt's ``_read_packet`` for our connection: returns the bytes consumed, or -1
        for a malformed length (gmqtt then drops the connection)."""
        handler = self._client._package_handler
        if handler.current_connection is not connection:  # superseded: gmqtt drops them
            return int(type(protocol)._read_packet(protocol, data))
        messages: list[InboundMessage] = []
        received = 0  # payload bytes: the pipeline's measure of what it holds
        size = len(data)
        pos = 0
        arrived = max(time.time_ns(), self._next_arrival)
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
                    message = self._message(data, at, end, cmd, connection, arrived)
                except IndexError:  # a malformed packet: gmqtt drops the connection
                    return -1
                messages.append(message)
                arrived += ((end - at) >> 3) + 1
                received += len(message.payload)
            else:
                if messages:  # keep the order of everything the broker sent
                    self._deliver(messages, received)
                    messages, received = [], 0
                connection.put_package(Package(cmd, data[at:end]))
            pos = end
        self._next_arrival = arrived
        connection._last_data_in = time.monotonic()  # gmqtt's keep-alive bookkeeping
        if messages:
            self._deliver(messages, received)
        return pos

    @staticmethod
    def _message(
        data: bytes, at: int, end: int, cmd: int, connection: Any, arrived: int
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
        topic, mid, payload = _publish(data, at, end, qos)
        return InboundMessage(topic, payload, mid, connection if qos else None, arrived)

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        if any(code >= 0x80 for code in qos):
            log.error("subscription refused by the broker (codes %s): check the ACL", qos)
            return
        self._subacks += 1
        if self._subacks >= len(self._filters):
            self._subscribed.set()

    def _on_connect(self, client: Any, flags: Any, rc: Any, properties: Any) -> None:
        connection = self._client._connection
        protocol = connection._protocol
        protocol._read_packet = partial(self._read_packets, protocol, connection)
        # Subscribe on every (re)connect, not only the first: Mosquitto 2.0 does not
        # restore shared subscriptions from its persistence file after a restart.
        self._subacks = 0
        for topic_filter in self._filters:
            self._client.subscribe(gmqtt.Subscription(topic_filter, qos=1))

    async def __aenter__(self) -> Self:
        try:
            await self._client.connect(
                self._host,
                self._port,
                ssl=self._tls.context() if self._tls else False,
                keepalive=30,
            )
        except (ssl.SSLError, ConnectionResetError) as exc:
            if self._tls is None:
                raise
            raise self._tls.failure(exc, self._host, self._port) from exc
        self.connected_once = True
        if self._await_subscription:
            await self.subscribed()
        return self

    async def subscribed(self, timeout_s: float = 10.0) -> None:
        """Until the broker confirms every subscription (``TimeoutError`` if it does not)."""
        async with asyncio.timeout(timeout_s):
            await self._subscribed.wait()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client.is_connected:
            await self._client.disconnect()

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected)

    def pause(self) -> None:
        """Stop reading from the socket (backpressure); the broker keeps the rest.

        gmqtt reads through an asyncio StreamReader, which resumes a transport it paused
        itself as soon as its buffer runs dry (measured: 1.5 MB read on while "paused").
        So the pause is taken over from it: it no longer counts the transport as its own
        to resume, and only ``resume()`` reads on."""
        connection = self._client._connection
        if connection is not None and not connection.is_closing():
            connection._transport.pause_reading()
            connection._protocol._stream_reader._paused = False
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            connection = self._client._connection
            if connection is not None and not connection.is_closing():
                connection._transport.resume_reading()
            self.paused = False

    def ack(self, messages: Sequence[InboundMessage]) -> None:
        """PUBACK every QoS 1 message in one write. Those that came over an earlier
        connection are skipped: the broker sends them again on this one."""
        current = self._client._connection
        if current is None or current.is_closing():
            return
        packets = b"".join(
            [_PUBACKS[m.mid] for m in messages if m.mid is not None and m.connection is current]
        )
        if packets:
            current.send_package(packets)
