"""BulkPublisher against a real Mosquitto that goes away: the call fails, it never hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
from conftest import FLEET_PASSWORD, INGEST_PASSWORD
from support import wait_until

from sensornet.bulk_publisher import BulkPublisher
from sensornet.errors import ServiceError
from wiring.services import Mosquitto

WINDOW = 5


async def test_a_broker_that_dies_with_the_window_full_fails_the_call(broker: Mosquitto) -> None:
    publisher = BulkPublisher(
        "127.0.0.1", broker.port, "bulk-dies", "simulator", FLEET_PASSWORD, window=WINDOW
    )
    pid = broker.pid()
    assert pid is not None
    yielded = 0

    def messages() -> Iterator[tuple[bytes, bytes]]:
        nonlocal yielded
        for n in range(10_000):
            if n == 50:
                os.kill(pid, signal.SIGSTOP)  # frozen: no more PUBACKs, the window fills
            yielded += 1
            yield b"city/v1/AQ-1/readings", b'{"pm25": 1.0}'

    task = asyncio.create_task(publisher.publish_all(messages()))
    try:

        async def window_full() -> bool:
            # the item after a full window waits for a PUBACK that will never come
            return yielded - publisher.acked > WINDOW

        await wait_until(window_full, timeout_s=30)
        broker.kill()  # the kernel closes its sockets: the PUBACK reader sees the end
        with pytest.raises(ServiceError, match="closed the connection"):
            await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # if it is still there, the fixture stops it


async def test_a_second_call_waits_for_its_own_acks(broker: Mosquitto) -> None:
    """``acked`` counts over every call: a second ``publish_all`` on the same publisher
    used to see the first call's acks as its own and return (and disconnect) before the
    broker had its messages; found by the LoRaWAN simulator (tests/test_sim_lorawan.py)."""
    from support import mqtt_client

    received: list[bytes] = []
    async with mqtt_client("bulk-twice-sub", broker.port, "ingester", INGEST_PASSWORD) as sub:

        def on_message(client: object, topic: str, payload: bytes, qos: int, props: object) -> int:
            received.append(payload)
            return 0

        sub.client.on_message = on_message
        sub.client.subscribe("city/v1/AQ-2/readings", qos=1)
        await asyncio.sleep(0.3)
        publisher = BulkPublisher("127.0.0.1", broker.port, "bulk-twice", "simulator",
                                  FLEET_PASSWORD)  # fmt: skip
        for round_ in range(3):
            batch = [(b"city/v1/AQ-2/readings", b'{"seq": %d}' % (round_ * 100 + i))
                     for i in range(200)]  # fmt: skip
            assert await publisher.publish_all(batch) == 200
        assert publisher.acked == 600

        async def all_received() -> bool:
            return len(received) == 600

        await wait_until(all_received, timeout_s=10)
