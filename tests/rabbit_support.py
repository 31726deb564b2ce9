"""Helpers for tests of the scaled shape (RabbitMQ cluster, AMQP input, broker logins)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sensornet import mqtt_wire
from sensornet.settings import Settings
from wiring.rabbitmq import RabbitCluster


def rabbit_settings(settings: Settings, cluster: RabbitCluster, **more: Any) -> Settings:
    """The test's settings pointed at the session's cluster and its login endpoint."""
    return settings.model_copy(
        update={
            "ingest_inputs": ["amqp"],
            "amqp_urls": ",".join(f"amqp://127.0.0.1:{n.ports.amqp}/" for n in cluster.nodes),
            "broker_auth_port": cluster.auth_port,  # type: ignore[attr-defined]
            **more,
        }
    )


async def queue_empty(cluster: RabbitCluster) -> bool:
    """The readings queue holds nothing, ready or unacknowledged (the management API's
    figures lag by its stats interval: callers poll)."""
    q = await asyncio.to_thread(cluster.queue)
    return q.get("messages", 1) == 0


class RawPublisher:
    """One device's MQTT 3.1.1 connection (RabbitMQ 3.10 speaks no MQTT 5): publishes
    QoS 1 and records which packet ids the broker acknowledged."""

    def __init__(self, host: str, port: int, device: str, password: str) -> None:
        self.host, self.port, self.device, self.password = host, port, device, password
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> int:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(
            mqtt_wire.connect_packet(
                f"{self.device}-{time.monotonic_ns()}", self.device, self.password, keepalive=0
            )
        )
        await self.writer.drain()
        ack = await self.reader.readexactly(4)
        return ack[3]

    async def publish(self, topic: str, payload: bytes, mid: int) -> None:
        assert self.writer is not None
        self.writer.write(mqtt_wire.publish_packet(topic.encode(), payload, mid))
        await self.writer.drain()

    async def puback(self, timeout_s: float = 10.0) -> int | None:
        """The packet id of the next PUBACK, ``None`` if the broker closed the connection."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(timeout_s):
                head = await self.reader.readexactly(4)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        if head[0] != 0x40:
            raise AssertionError(f"expected a PUBACK, got {head!r}")
        return (head[2] << 8) | head[3]

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.write(mqtt_wire.DISCONNECT)
                self.writer.close()
                await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def publishers(
    endpoints: Sequence[tuple[str, int]], credentials: dict[str, str]
) -> AsyncIterator[dict[str, RawPublisher]]:
    """One connected publisher per device, spread over the nodes round-robin."""
    out: dict[str, RawPublisher] = {}
    try:
        for i, (device, password) in enumerate(sorted(credentials.items())):
            host, port = endpoints[i % len(endpoints)]
            p = RawPublisher(host, port, device, password)
            code = await p.connect()
            assert code == 0, f"{device} refused on {port}: {code}"
            out[device] = p
        yield out
    finally:
        await asyncio.gather(*(p.close() for p in out.values()))
