"""The native MQTT input: an MQTT 5 subscription with acknowledgement after the write,
on gmqtt (the inputs' interface: ``ingest.inputs``).

gmqtt either acks on receipt or acks when a per-message coroutine returns, which costs a
task per message. This source takes the packet id instead and lets the ingester send
PUBACKs itself, in one socket write per batch, once the batch is durable. Acks for
messages that arrived on an earlier connection are dropped: the broker redelivers those,
and the rewrite is idempotent (same series, same timestamp). Incoming PUBLISH packets are
cut from each socket read by ``sensornet.mqtt_wire.FrameReader`` and handed over as one
list; the private gmqtt parts this needs are all in ``sensornet.mqtt_wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self

import gmqtt

from sensornet.mqtt_tls import MqttTls
from sensornet.mqtt_wire import PUBACKS, FrameReader, GmqttHooks, InboundMessage, parse_publish
from sensornet.topics import ingest_filters

if TYPE_CHECKING:
    from ingest.inputs import BatchOutcome, InputContext

log = logging.getLogger(__name__)


class MqttSource:
    """Persistent QoS 1 session: fixed client id, clean start off, session expiry set."""

    name = "mqtt"

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
        self._refused: tuple[int, ...] = ()
        self._reads = 0  # socket reads that brought messages: the broker is delivering
        self._hooks = GmqttHooks(self._client)
        self._frames = FrameReader(self._delivered, lambda cmd, body: None)
        self._hooks.on_publish_packet(self._on_publish)

    def _delivered(self, messages: list[InboundMessage], size: int) -> None:
        self._reads += 1
        self._deliver(messages, size)

    def _on_publish(self, cmd: int, raw: bytes, connection: object) -> None:
        """A PUBLISH that came through gmqtt's own loop (before ours was installed)."""
        qos = (cmd >> 1) & 3
        topic, mid, payload = parse_publish(raw, 0, len(raw), qos)
        arrived = self._frames.arrival(len(raw))
        message = InboundMessage(topic, payload, mid, connection if qos else None, arrived)
        self._deliver([message], len(payload))

    def _on_generic(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        """Messages gmqtt parsed itself (QoS 2, which we never ask for); it acks them."""
        arrived = self._frames.arrival(len(payload))
        self._deliver([InboundMessage(topic, payload, None, None, arrived)], len(payload))
        return 0

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        if any(code >= 0x80 for code in qos):
            log.error("subscription refused by the broker (codes %s): check the ACL", qos)
            self._refused = tuple(qos)
            return
        self._subacks += 1
        if self._subacks >= len(self._filters):
            self._subscribed.set()

    def _on_connect(self, client: Any, flags: Any, rc: Any, properties: Any) -> None:
        self._hooks.read_frames_with(self._frames)
        # Subscribe on every (re)connect, not only the first: Mosquitto 2.0 does not
        # restore shared subscriptions from its persistence file after a restart.
        self._subacks = 0
        self._refused = ()
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

    async def ready(self) -> None:
        await self.subscribed()

    async def subscribed(self, timeout_s: float = 10.0) -> None:
        """Until the broker confirms every subscription.

        The SUBACK comes after the backlog the broker had queued for the session (up to
        receive-maximum messages in flight), and reading that backlog may take long: the
        socket pauses for backpressure while batches are written. So the wait goes on as
        long as the broker delivers, or the socket is paused; ``TimeoutError`` once it has
        confirmed nothing and delivered nothing for ``timeout_s``, or refused a filter. (A
        fixed deadline made a slow drain of large messages, LoRaWAN envelopes, give up the
        connection, and the broker sent every unacknowledged message again on the next.)"""
        while not self._subscribed.is_set():
            reads = self._reads
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._subscribed.wait()
            if self._refused:
                raise TimeoutError(
                    f"broker {self._host}:{self._port} refused a subscription of "
                    f"{self._filters} (codes {list(self._refused)}): check the ACL"
                )
            if not self._subscribed.is_set() and self._reads == reads and not self.paused:
                raise TimeoutError(
                    f"broker {self._host}:{self._port} confirmed no subscription of "
                    f"{self._filters} and delivered nothing in {timeout_s:.0f} s"
                )

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        # Also when the connection is down: gmqtt's disconnect is what stops it from
        # reconnecting (for ever, by default) after the ingester has stopped.
        await self._client.disconnect()

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected)

    def pause(self) -> None:
        """Stop reading from the socket (backpressure); the broker keeps the rest."""
        if self._hooks.pause_reading():
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._hooks.resume_reading()
            self.paused = False

    def ack(self, messages: Sequence[InboundMessage], outcome: BatchOutcome | None = None) -> None:
        """PUBACK every QoS 1 message in one write. Those that came over an earlier
        connection are skipped: the broker sends them again on this one."""
        current = self._hooks.connection
        packets = b"".join(
            [PUBACKS[m.mid] for m in messages if m.mid is not None and m.connection is current]
        )
        if packets:
            self._hooks.send(packets)


def build(context: InputContext) -> MqttSource:
    """The ingester's own session: its fixed client id and subscribe-only identity."""
    s = context.settings
    return MqttSource(
        host=s.mqtt_host,
        port=s.mqtt_port,
        client_id=s.ingest_client_id,
        username=s.mqtt_ingest_user,
        password=s.mqtt_ingest_password.get_secret_value(),
        topic_filters=ingest_filters(s.topic_prefix, s.ingest_share_group or None),
        on_messages=context.deliver,
        session_expiry_s=s.ingest_session_expiry_s,
        receive_maximum=s.ingest_receive_maximum,
        await_subscription=False,
        tls=MqttTls.from_settings(s),
    )
