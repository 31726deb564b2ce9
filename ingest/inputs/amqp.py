"""AMQP 0-9-1 input: the readings quorum queue of the scaled shape (RabbitMQ, issue 21;
the inputs' interface: ``ingest.inputs``).

Devices publish MQTT to any RabbitMQ node; the MQTT plugin routes each message into
``amq.topic`` and the readings queue holds it. Every ingester consumes that one queue as a
competing consumer, so several share the work with nothing per instance but a name (the
consumer tag). Like the MQTT input it acknowledges only when the ingester says the batch
is durable, and it takes at most ``prefetch`` unacknowledged messages (sized by the
ingester to its batches in flight): a killed ingester's unacknowledged messages go back to
the queue and to the others, and there are at most ``prefetch`` of them.

aiormq rather than aio-pika (both measured, docs/decisions.md "Scaled shape"): aio-pika
wraps every delivery of aiormq in an object and a task of its own; the input needs
nothing of that. A lost connection is re-established on the next node of the list; acks
for deliveries of an earlier channel are dropped (the broker redelivers them, and the
rewrite is idempotent: same series, same timestamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Self

import aiormq
import aiormq.abc
from pamqp.commands import Basic

from sensornet.errors import ServiceError
from sensornet.mqtt_wire import InboundMessage
from sensornet.topics import topic_of_routing_key

if TYPE_CHECKING:
    from ingest.inputs import BatchOutcome, InputContext
    from ingest.metrics import IngestStats

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0


class AmqpSource:
    """A consumer of one queue over a list of equivalent node URLs, reconnecting."""

    name = "amqp"

    def __init__(
        self,
        *,
        urls: Sequence[str],
        queue: str,
        name: str,
        prefetch: int,
        on_messages: Callable[[list[InboundMessage], int], None],
        stats: IngestStats | None = None,
    ) -> None:
        if not urls:
            raise ServiceError("the AMQP input needs at least one URL (SENSORNET_AMQP_URLS)")
        # start on a node picked by the name, so ingesters spread over the nodes
        start = sum(name.encode()) % len(urls)
        self._urls = list(urls[start:]) + list(urls[:start])
        self._queue, self._name, self._prefetch = queue, name, prefetch
        self._deliver = on_messages
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._subscribed = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._acks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.connected_once = False
        self.paused = False
        self._stats = stats
        self.redelivered = 0  # deliveries the broker marked as redelivered
        # the current channel's newest delivery tag and newest tag acknowledged (tags count
        # up from 1 per channel, acks are cumulative): their difference is what a lost
        # connection gives back to the queue
        self._delivered_tag = self._acked_tag = 0
        self.node_url = ""  # the node this input is connected to (for health)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        delivery = message.delivery
        if not isinstance(delivery, Basic.Deliver):
            return  # a consumer gets only Deliver frames
        if message.channel is self._channel and delivery.delivery_tag is not None:
            self._delivered_tag = max(self._delivered_tag, delivery.delivery_tag)
        if delivery.redelivered:
            self.redelivered += 1
            if self._stats is not None:
                self._stats.redelivered += 1
        body = message.body
        self._deliver(
            [
                InboundMessage(
                    topic_of_routing_key(delivery.routing_key or ""),
                    body,
                    delivery.delivery_tag,
                    message.channel,
                    time.time_ns(),
                )
            ],
            len(body),
        )

    async def _connect(self) -> None:
        last: BaseException | None = None
        for url in self._urls:
            try:
                connection = await aiormq.connect(url)
                channel = await connection.channel()
                await channel.basic_qos(prefetch_count=self._prefetch)
                await channel.basic_consume(
                    self._queue, self._on_message, no_ack=False, consumer_tag=self._name
                )
            except (OSError, aiormq.exceptions.AMQPError) as exc:
                last = exc
                continue
            self._connection, self._channel = connection, channel
            self._delivered_tag = self._acked_tag = 0
            self.node_url = url.rsplit("@", 1)[-1]
            self._urls = self._urls[self._urls.index(url) :] + self._urls[: self._urls.index(url)]
            self.connected_once = True
            self._subscribed.set()
            log.info("ingester %s consuming %s on %s", self._name, self._queue, self.node_url)
            return
        raise ServiceError(f"no AMQP node of {len(self._urls)} accepted the consumer: {last!r}")

    async def _supervise(self) -> None:
        """Reconnect when the connection is lost (a node died), on the next node."""
        delay = 0.2
        while not self._closing:
            connection = self._connection
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.closing
            if self._closing:
                return
            released = self._delivered_tag - self._acked_tag
            if self._stats is not None:
                self._stats.released += released
            log.warning(
                "ingester %s lost its AMQP connection with %d deliveries unacknowledged (the "
                "queue gives them out again, at most the prefetch of %d); reconnecting",
                self._name,
                released,
                self._prefetch,
            )
            self._channel = None
            self._urls = self._urls[1:] + self._urls[:1]
            try:
                await self._connect()
                delay = 0.2
                if self._stats is not None:
                    self._stats.reconnects += 1
            except ServiceError as exc:
                log.error("%s; retrying in %.1f s", exc, delay)
                self._connection = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def __aenter__(self) -> Self:
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(), name="amqp-supervisor")
        return self

    async def ready(self) -> None:
        await self.subscribed()

    async def subscribed(self, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self._subscribed.wait()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        if self._acks:
            await asyncio.gather(*self._acks, return_exceptions=True)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    @property
    def is_connected(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    def pause(self) -> None:
        """Stop taking deliveries off the socket (backpressure); prefetch bounds them too."""
        transport = self._transport()
        if transport is not None and not self.paused:
            transport.pause_reading()
            self.paused = True

    def resume(self) -> None:
        transport = self._transport()
        if self.paused:
            if transport is not None:
                transport.resume_reading()
            self.paused = False

    def _transport(self) -> asyncio.ReadTransport | None:
        writer = getattr(self._connection, "writer", None)  # aiormq's asyncio stream writer
        transport = getattr(writer, "transport", None)
        return transport if isinstance(transport, asyncio.ReadTransport) else None

    def ack(self, messages: Sequence[InboundMessage], outcome: BatchOutcome | None = None) -> None:
        """Acknowledge a durable batch: one ``basic.ack multiple`` up to its last delivery
        on the current channel. The ingester acks batches in arrival order, so every
        earlier delivery of this channel is durable too."""
        channel = self._channel
        if channel is None:
            return
        tags = [m.mid for m in messages if m.mid is not None and m.connection is channel]
        if not tags:
            return
        task = asyncio.create_task(self._ack(channel, max(tags)))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _ack(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        try:
            await channel.basic_ack(tag, multiple=True)
        except Exception as exc:  # the channel died: the broker redelivers, idempotent
            log.warning("ack of deliveries up to %d lost with the channel: %r", tag, exc)
            return
        if channel is self._channel:  # written; the queue may still lose it with its node
            self._acked_tag = max(self._acked_tag, tag)


def prefetch(batch_size: int, receive_maximum: int, writes_in_flight: int) -> int:
    """The batches that may be unacknowledged at once, as MQTT's receive-maximum bounds
    them (the ingester's batch cap: receive-maximum / (writes in flight + 1)): the batch
    being filled and those being written."""
    batch = max(1, min(batch_size, receive_maximum // (writes_in_flight + 1)))
    return batch * (writes_in_flight + 1)


def build(context: InputContext) -> AmqpSource:
    """A competing consumer of the readings queue, named by the ingester's client id."""
    s = context.settings
    return AmqpSource(
        urls=s.amqp_node_urls(),
        queue=s.amqp_queue,
        name=s.ingest_client_id,
        prefetch=prefetch(s.ingest_batch_size, s.ingest_receive_maximum, s.ingest_writes_in_flight),
        on_messages=context.deliver,
        stats=context.stats,
    )
