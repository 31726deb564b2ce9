"""A persistent session's backlog arrives before the SUBACK, on a real Mosquitto: a
consumer that drains it slowly (its socket paused for backpressure between reads, as the
ingester's is while batches are written) keeps its one connection, and gets every message
once. A fixed deadline on the SUBACK used to give the connection up mid-drain, and the
broker then sent every unacknowledged message again (docs/benchmarks.md, "Redeliveries")."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

from support import wait_until

from gateway_sim.lorawan import chirpstack_uplink
from ingest.inputs.lorawan import UPLINK_FILTERS
from ingest.inputs.mqtt import MqttSource
from sensornet.bulk_publisher import BulkPublisher
from sensornet.mqtt_wire import InboundMessage
from wiring.lorawan import NS_PUBLISHER, network_server_broker
from wiring.services import free_port

SUBSCRIBER, SUB_PW, PUB_PW = (
    "sensornet-lorawan",
    secrets.token_urlsafe(12),
    secrets.token_urlsafe(12),
)
BACKLOG = 2000  # ~700-byte envelopes: ~1.4 MB, some 20 socket reads
PAUSE_S = 0.05  # paused after each read: the drain takes ~1 s
SUBACK_TIMEOUT_S = 0.3  # far less than the drain


def source(port: int, deliver: object) -> MqttSource:
    return MqttSource(
        host="127.0.0.1",
        port=port,
        client_id="backlog-drain",
        username=SUBSCRIBER,
        password=SUB_PW,
        topic_filters=UPLINK_FILTERS["chirpstack"],
        on_messages=deliver,  # type: ignore[arg-type]
        session_expiry_s=3600,
        receive_maximum=40_000,
        await_subscription=False,
    )


async def test_a_slow_drain_keeps_its_connection_and_gets_each_message_once(
    tmp_path: Path,
) -> None:
    broker = network_server_broker(tmp_path / "ns", free_port(), SUBSCRIBER, SUB_PW, PUB_PW)
    broker.start()
    try:
        async with source(broker.port, lambda messages, size: None) as first:
            await first.subscribed()  # the session and its subscriptions exist
        t0 = time.time_ns() - 60 * 10**9
        uplinks = [
            chirpstack_uplink("70B3D57ED005B89A", "wl", i + 1, t0 + i, decoded={"depth": 1.5})
            for i in range(BACKLOG)
        ]
        publisher = BulkPublisher("127.0.0.1", broker.port, "ns", NS_PUBLISHER, PUB_PW)
        assert await publisher.publish_all((t.encode(), p) for t, p in uplinks) == BACKLOG

        got: list[InboundMessage] = []
        loop = asyncio.get_running_loop()

        def deliver(messages: list[InboundMessage], size: int) -> None:
            got.extend(messages)
            drain.ack(messages)
            drain.pause()  # a slow consumer: the rest waits in the socket, the SUBACK too
            loop.call_later(PAUSE_S, drain.resume)

        async def all_in() -> bool:
            return len(got) >= BACKLOG

        drain = source(broker.port, deliver)
        async with drain:
            await drain.subscribed(timeout_s=SUBACK_TIMEOUT_S)  # must not give up
            await wait_until(all_in, timeout_s=60)
            await asyncio.sleep(0.5)  # nothing more is coming: no redelivery
            connections = {id(m.connection) for m in got}
        assert len(got) == BACKLOG
        assert len({m.payload for m in got}) == BACKLOG
        assert len(connections) == 1
        log = broker.log_file.read_text(errors="replace")
        assert log.count("as backlog-drain") == 2  # the session's creation and the drain
    finally:
        broker.stop()
