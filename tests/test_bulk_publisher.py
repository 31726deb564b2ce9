"""BulkPublisher against a real Mosquitto that goes away: the call fails, it never hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
from conftest import FLEET_PASSWORD
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
