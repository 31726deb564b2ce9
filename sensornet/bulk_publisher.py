"""A minimal, fast MQTT 3.1.1 QoS 1 publisher for load and benchmarks.

Python MQTT clients spend most of their time per message in generality we do not need
here. This one writes pre-built PUBLISH packets in large chunks, keeps at most ``window``
unacknowledged (the 16-bit packet id must not wrap onto one still in flight), and counts
PUBACKs, so "sent" means "acknowledged by the broker".
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

from sensornet.errors import ServiceError
from sensornet.mqtt_tls import MqttTls
from sensornet.mqtt_wire import (
    DISCONNECT,
    MAX_PACKET_ID,
    connack_code,
    connect_packet,
    count_pubacks,
    publish_packet,
)


class BulkPublisher:
    """One connection. ``publish_all`` returns when every message is acknowledged."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        window: int = 20_000,
        tls: MqttTls | None = None,
    ) -> None:
        if not 0 < window < MAX_PACKET_ID:
            raise ValueError("window must be below 65535 (16-bit packet ids)")
        self._addr = (host, port)
        self._tls = tls
        self._connect = connect_packet(client_id, username, password)
        self.window = window
        self.acked = 0

    async def publish_all(self, messages: Iterable[tuple[bytes, bytes]]) -> int:
        """Publish every message; the connection and its PUBACK reader are closed on every
        way out, and a broker that drops the connection fails the call rather than hang it."""
        try:
            reader, writer = await asyncio.open_connection(
                *self._addr, ssl=self._tls.context() if self._tls else None
            )
        except (ssl.SSLError, ConnectionResetError) as exc:
            if self._tls is None:
                raise
            raise self._tls.failure(exc, *self._addr) from exc
        try:
            try:
                writer.write(self._connect)
                connack = await reader.readexactly(4)  # a refused client certificate shows here
            except (ssl.SSLError, ConnectionResetError) as exc:
                if self._tls is None:
                    raise
                raise self._tls.failure(exc, *self._addr) from exc
            code = connack_code(connack)
            if code != 0:
                raise ServiceError(f"broker refused the connection (CONNACK code {code})")
            sent = await self._publish(reader, writer, messages)
            writer.write(DISCONNECT)
            return sent
        finally:
            writer.close()

    async def _publish(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        messages: Iterable[tuple[bytes, bytes]],
    ) -> int:
        slots = asyncio.Semaphore(self.window)
        done = asyncio.Event()
        sent = 0
        before = self.acked  # counts over every call: a second call waits for its own acks
        finished_sending = False

        async def read_acks() -> None:
            buf = b""
            while True:
                try:
                    chunk = await reader.read(65536)
                except ConnectionError as exc:
                    raise ServiceError(f"broker closed the connection: {exc}") from exc
                if not chunk:
                    raise ServiceError("broker closed the connection")
                try:
                    acked, buf = count_pubacks(buf + chunk)
                except ValueError as exc:
                    raise ServiceError(str(exc)) from exc
                self.acked += acked
                for _ in range(acked):
                    slots.release()
                if finished_sending and self.acked - before >= sent:
                    done.set()
                    return

        async def room() -> None:
            """A free slot of a full window, or the PUBACK reader's error if it stopped."""
            free = asyncio.ensure_future(slots.acquire())
            await asyncio.wait([free, acks], return_when=asyncio.FIRST_COMPLETED)
            if not free.done():
                free.cancel()
                acks.result()  # it only stops early on an error: raise it

        acks = asyncio.create_task(read_acks())
        try:
            chunk = bytearray()
            packet_id = 0
            for topic, payload in messages:
                if slots.locked() or len(chunk) > 256 * 1024:
                    writer.write(bytes(chunk))
                    chunk.clear()
                    await writer.drain()
                if slots.locked():
                    await room()
                else:
                    await slots.acquire()
                packet_id = packet_id % MAX_PACKET_ID + 1
                chunk += publish_packet(topic, payload, packet_id)
                sent += 1
                if acks.done():
                    acks.result()
            writer.write(bytes(chunk))
            await writer.drain()
            finished_sending = True
            if self.acked - before >= sent:
                done.set()
            waiter = asyncio.create_task(done.wait())
            try:
                await asyncio.wait([acks, waiter], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if acks.done() and not done.is_set():
                acks.result()
            return sent
        finally:
            acks.cancel()
