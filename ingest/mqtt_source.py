"""MQTT 5 subscription with acknowledgement after the write, on gmqtt.

gmqtt is the fastest asyncio MQTT 5 client we measured (docs/decisions.md), but it either
acks on receipt or acks when a per-message coroutine returns, which costs a task per
message. This shim takes the packet id instead and lets the pipeline send PUBACKs itself,
in one socket write per batch, once the batch is durable. Acks for messages that arrived
on an earlier connection are dropped: the broker redelivers those, and the rewrite is
idempotent (same series, same timestamp).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import gmqtt

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")


@dataclass(slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    mid: int | None  # None for QoS 0: nothing to acknowledge
    connection: object  # the connection it arrived on; acks go only to that one
    arrived_ns: int = 0  # the platform's clock: the timestamp of readings without one


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
        on_message: Callable[[InboundMessage], None],
        session_expiry_s: int,
        receive_maximum: int,
    ) -> None:
        self._host, self._port = host, port
        self._filters = list(topic_filters)
        self._deliver = on_message
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
        self._client.on_message = self._on_qos0
        self._client.on_subscribe = self._on_subscribe
        self._client.on_connect = self._on_connect
        self._subacks = 0
        self._subscribed = asyncio.Event()
        handler = self._client._package_handler
        self._generic_publish = handler._handle_publish_packet
        handler._handle_publish_packet = self._on_publish

    def _on_publish(self, cmd: int, raw: bytes) -> None:
        """PUBLISH parsed on the hot path: topic, packet id, payload. We need no property
        (topic aliases are off: we announce no alias maximum), so they are skipped."""
        qos = (cmd >> 1) & 3
        if qos == 2:  # never subscribed at QoS 2; let gmqtt deal with the oddity
            self._generic_publish(cmd, raw)
            return
        end = 2 + ((raw[0] << 8) | raw[1])
        topic = raw[2:end].decode("utf-8", "replace")
        mid = None
        if qos:
            mid = (raw[end] << 8) | raw[end + 1]
            end += 2
        length, shift = 0, 0
        while True:  # MQTT 5 property length, a variable byte integer
            byte = raw[end]
            end += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        connection = self._client._connection if qos else None
        self._deliver(InboundMessage(topic, raw[end + length :], mid, connection, time.time_ns()))

    def _on_qos0(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self._deliver(InboundMessage(topic, payload, None, None, time.time_ns()))
        return 0

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        if any(code >= 0x80 for code in qos):
            log.error("subscription refused by the broker (codes %s): check the ACL", qos)
            return
        self._subacks += 1
        if self._subacks >= len(self._filters):
            self._subscribed.set()

    def _on_connect(self, client: Any, flags: Any, rc: Any, properties: Any) -> None:
        # Subscribe on every (re)connect, not only the first: Mosquitto 2.0 does not
        # restore shared subscriptions from its persistence file after a restart.
        self._subacks = 0
        for topic_filter in self._filters:
            self._client.subscribe(gmqtt.Subscription(topic_filter, qos=1))

    async def __aenter__(self) -> Self:
        await self._client.connect(self._host, self._port, keepalive=30)
        async with asyncio.timeout(10):
            await self._subscribed.wait()
        self.connected_once = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client.is_connected:
            await self._client.disconnect()

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected)

    def pause(self) -> None:
        """Stop reading from the socket (backpressure); the broker keeps the rest."""
        connection = self._client._connection
        if connection is not None and not connection.is_closing():
            connection._transport.pause_reading()
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            connection = self._client._connection
            if connection is not None and not connection.is_closing():
                connection._transport.resume_reading()
            self.paused = False

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        """PUBACK every QoS 1 message in one write; returns how many could not be acked
        because their connection is gone (the broker will redeliver them)."""
        current = self._client._connection
        packets = bytearray()
        stale = 0
        for m in messages:
            if m.mid is None:
                continue
            if m.connection is not current or current is None:
                stale += 1
                continue
            packets += _PUBACK.pack(0x40, 2, m.mid)
        if packets and current is not None and not current.is_closing():
            current.send_package(bytes(packets))
        return stale
