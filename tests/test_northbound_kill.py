"""kill -9 of the pusher process while events are pending: after a restart every event
arrives, each sensor's in order; what was sent but not recorded comes again with the same
ids (the receiver drops them), and the delivered count counts each event once."""

from __future__ import annotations

import time

from northbound_support import (
    PusherProcess,
    fast,
    in_order_per_sensor,
    subscribe,
    subscription,
    write_readings,
)
from support import wait_until

from alarms.northbound.receiver import Faults, Receiver
from sensornet.influx import InfluxClient
from sensornet.settings import Settings


async def test_pusher_killed_mid_delivery_loses_nothing(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = fast(settings, northbound_batch_size=20)
    start = time.time_ns() - 60 * 10**9
    async with Receiver(None) as receiver:
        sub_id, receiver.secret = await subscribe(settings, receiver.url, start)
        expected = await write_readings(influx, start + 10**9, 400, step_ns=10**7)  # 1200
        receiver.faults = Faults(delay_s=0.05)  # ~3 s for all: time to kill it midway
        pusher = PusherProcess(settings)
        pusher.start()
        try:
            await wait_until(lambda: _count(receiver, 300), 30)
            pusher.kill()
            assert len(receiver.got.ids) < len(expected)
            pusher.start()
            await wait_until(lambda: _count(receiver, len(expected)), 60)
            sub = await wait_until(lambda: _delivered(settings, sub_id, len(expected)))
        finally:
            assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    assert receiver.got.ids == set(expected)
    assert in_order_per_sensor(receiver.got.unique)
    assert sub.delivered == len(expected)  # each event once, whatever was sent twice


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.got.ids) >= n


async def _delivered(settings: Settings, sub_id: str, n: int) -> object:
    sub = await subscription(settings, sub_id)
    return sub if sub.delivered >= n else None
