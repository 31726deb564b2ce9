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


async def consumer_nodes(cluster: RabbitCluster, count: int) -> dict[str, str] | None:
    """``{consumer tag: node name}`` of the readings queue's consumers, once there are
    ``count`` (the broker's view; its figures lag by the stats interval: callers poll)."""
    q = await asyncio.to_thread(cluster.queue)
    found = {
        c["consumer_tag"]: c["channel_details"]["node"]
        for c in q.get("consumer_details", [])
        if c.get("channel_details")  # [] until the channel's figures are in
    }
    return found if len(found) == count else None


class RawPublisher:
    """One device's MQTT 3.1.1 connection (RabbitMQ 3.10 speaks no MQTT 5): publishes
    QoS 1 and records which packet ids the broker acknowledged."""

    def __init__(self, host: str, port: int, device: str, password: str) -> None:
        self.host, self.port, self.device, self.password = host, port, device, password
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, timeout_s: float = 10.0) -> int:
        async with asyncio.timeout(timeout_s):
            return await self._connect()

    async def _connect(self) -> int:
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


async def publish_all(
    endpoints: Sequence[tuple[str, int]],
    start: int,
    device: str,
    password: str,
    items: Sequence[tuple[str, bytes]],
    window: int = 20,
    deadline_s: float = 120.0,
    pace_s: float = 0.0,
) -> set[int]:
    """Publish ``items`` QoS 1 as one device, at most ``window`` unacknowledged, starting
    on node ``start``, ``pace_s`` apart (a device's cadence; 0: as fast as acks allow);
    when the node goes away, reconnect to the next one and send again what was not
    acknowledged (at least once, as a device does). Returns the indices the broker
    acknowledged: the publishes the platform owes."""
    assert len(items) < 65_535
    acked: set[int] = set()
    node = start
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while len(acked) < len(items):
        if loop.time() > give_up:
            raise AssertionError(f"{device}: {len(acked)} of {len(items)} acknowledged")
        host, port = endpoints[node % len(endpoints)]
        pub = RawPublisher(host, port, device, password)
        try:
            if await pub.connect() != 0:
                raise ConnectionError("refused")
            todo = [i for i in range(len(items)) if i not in acked]
            in_flight: set[int] = set()
            for i in todo:
                while len(in_flight) >= window:
                    mid = await pub.puback()
                    if mid is None:
                        raise ConnectionError("lost")
                    in_flight.discard(mid - 1)
                    acked.add(mid - 1)
                topic, payload = items[i]
                await pub.publish(topic, payload, i + 1)
                in_flight.add(i)
                if pace_s:
                    await asyncio.sleep(pace_s)
            while in_flight:
                mid = await pub.puback()
                if mid is None:
                    raise ConnectionError("lost")
                in_flight.discard(mid - 1)
                acked.add(mid - 1)
        except (OSError, asyncio.IncompleteReadError):
            node += 1  # the node went away: the next one
            await asyncio.sleep(0.2)
        finally:
            await pub.close()
    return acked
