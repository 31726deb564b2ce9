"""A minimal, fast MQTT 3.1.1 QoS 1 publisher for load and benchmarks.

Python MQTT clients spend most of their time per message in generality we do not need
here. This one writes pre-built PUBLISH packets in large chunks, keeps at most ``window``
unacknowledged (the 16-bit packet id must not wrap onto one still in flight), and counts
PUBACKs, so "sent" means "acknowledged by the broker".
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Iterable

from sensornet.errors import ServiceError
from sensornet.mqtt_tls import MqttTls

_U16 = struct.Struct("!H")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return _U16.pack(len(s)) + s


def connect_packet(client_id: str, username: str, password: str, keepalive: int = 60) -> bytes:
    body = _str(b"MQTT") + bytes([4, 0xC2]) + _U16.pack(keepalive)
    body += _str(client_id.encode()) + _str(username.encode()) + _str(password.encode())
    return b"\x10" + _varint(len(body)) + body


def publish_packet(
    topic: bytes, payload: bytes, packet_id: int | None, properties: bytes | None = None
) -> bytes:
    """QoS 1 with a packet id, QoS 0 without; ``properties`` makes it MQTT 5 (as a broker
    sends it to an MQTT 5 client, ``b""`` for none)."""
    body = _str(topic)
    if packet_id is not None:
        body += _U16.pack(packet_id)
    if properties is not None:
        body += _varint(len(properties)) + properties
    body += payload
    return (b"\x30" if packet_id is None else b"\x32") + _varint(len(body)) + body


class Blaster:
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
        if not 0 < window < 65_535:
            raise ValueError("window must be below 65535 (16-bit packet ids)")
        self._addr = (host, port)
        self._tls = tls
        self._connect = connect_packet(client_id, username, password)
        self.window = window
        self.acked = 0

    async def publish_all(self, messages: Iterable[tuple[bytes, bytes]]) -> int:
        try:
            reader, writer = await asyncio.open_connection(
                *self._addr, ssl=self._tls.context() if self._tls else None
            )
            writer.write(self._connect)
            connack = await reader.readexactly(4)  # a refused client certificate shows here
        except (ssl.SSLError, ConnectionResetError) as exc:
            if self._tls is None:
                raise
            raise self._tls.failure(exc, *self._addr) from exc
        if connack[0] != 0x20 or connack[3] != 0:
            raise ServiceError(f"broker refused the connection (CONNACK code {connack[3]})")
        slots = asyncio.Semaphore(self.window)
        done = asyncio.Event()
        sent = 0
        finished_sending = False

        async def read_acks() -> None:
            buf = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ServiceError("broker closed the connection")
                buf += chunk
                n = len(buf) // 4 * 4
                for i in range(0, n, 4):
                    if buf[i] != 0x40:
                        raise ServiceError(f"unexpected packet type {buf[i]:#x} from the broker")
                    self.acked += 1
                    slots.release()
                buf = buf[n:]
                if finished_sending and self.acked >= sent:
                    done.set()
                    return

        acks = asyncio.create_task(read_acks())
        chunk = bytearray()
        packet_id = 0
        for topic, payload in messages:
            if slots.locked() or len(chunk) > 256 * 1024:
                writer.write(bytes(chunk))
                chunk.clear()
                await writer.drain()
            await slots.acquire()
            packet_id = packet_id % 65_535 + 1
            chunk += publish_packet(topic, payload, packet_id)
            sent += 1
            if acks.done():
                acks.result()
        writer.write(bytes(chunk))
        await writer.drain()
        finished_sending = True
        if self.acked >= sent:
            done.set()
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait([acks, waiter], return_when=asyncio.FIRST_COMPLETED)
        if acks.done() and not done.is_set():
            acks.result()
        acks.cancel()
        waiter.cancel()
        writer.write(b"\xe0\x00")  # DISCONNECT
        writer.close()
        return sent
