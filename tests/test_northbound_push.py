"""The pusher against a real InfluxDB and a local receiver that fails, times out and goes
away: nothing lost, each sensor's events in order, duplicates only with ids a receiver
drops; a receiver failing too long is paused with an alarm and resumed through the API;
the accounting agrees with what arrived."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
from northbound_support import (
    fast,
    in_order_per_sensor,
    subscribe,
    subscription,
    write_readings,
)
from support import running, wait_until

from alarms.northbound.pusher import run_pusher
from alarms.northbound.receiver import Faults, Receiver
from sensornet.influx import InfluxClient
from sensornet.northbound.store import Subscription
from sensornet.settings import Settings
from wiring.parts import run_api


def _api(settings: Settings, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


async def test_receiver_failing_slow_and_down_then_back_loses_nothing(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    settings = fast(settings)
    start = (time.time_ns() - 120 * 10**9) // 60_000_000_000 * 60_000_000_000
    receiver = Receiver(None)
    await receiver.start()
    try:
        sub_id, secret = await subscribe(settings, receiver.url, start)
        receiver.secret = secret
        expected = await write_readings(influx, start + 10**9, 100)  # 300 events
        async with running(run_pusher, settings):
            await wait_until(lambda: _have(receiver, expected), 30)
            # failing: 503s, nothing taken
            receiver.faults = Faults(status=503)  # live readings meanwhile, as devices send
            expected += await write_readings(influx, time.time_ns(), 50, step_ns=10**7)
            await wait_until(lambda: _at_least(receiver.got.refused, 3), 20)
            # slow: events taken, the answer comes after the pusher's 1 s timeout, so the
            # batch comes again: until the receiver has taken one twice. (Not a count of
            # events: the batch retried is the one the pusher read when the 503s began,
            # 3 to 24 events seen, as its 0.1 s poll fell against the 10 ms stamps; 50 more
            # events at 3 a try took ~17 tries of ~1.4 s, past the 20 s wait.)
            receiver.faults = Faults(delay_s=1.5)
            dups = len(receiver.got.events) - len(receiver.got.ids)
            await wait_until(
                lambda: _at_least(len(receiver.got.events) - len(receiver.got.ids), dups + 1)
            )
            # down: connections refused
            await receiver.stop()
            expected += await write_readings(influx, time.time_ns(), 50, step_ns=10**7)
            await asyncio.sleep(2)
            receiver.faults = Faults()
            await receiver.start()  # back, on the same port
            await wait_until(lambda: _have(receiver, expected), 60)
            sub = await wait_until(lambda: _recorded(settings, sub_id, len(expected)))
            async with running(run_api, settings), _api(settings, api_keys["engineer"]) as api:
                status = (await api.get(f"/northbound/subscriptions/{sub_id}")).json()
                window = {  # the first minute: the 300 readings from before the faults
                    "start": datetime.fromtimestamp(start / 1e9, UTC).isoformat(),
                    "end": datetime.fromtimestamp(start / 1e9 + 60, UTC).isoformat(),
                }
                url = f"/northbound/subscriptions/{sub_id}/accounting"
                answer = await api.get(url, params=window)
        assert answer.status_code == 200, answer.text
        account = answer.json()
    finally:
        await receiver.stop()
    got = receiver.got
    assert got.bad_signatures == 0
    assert got.ids == set(expected)  # nothing lost, nothing else
    assert len(got.events) > len(expected)  # the timed-out batches came again ...
    assert in_order_per_sensor(got.unique)  # ... and with them dropped, every sensor in order
    assert sub.delivered == len(expected) and sub.failed_attempts >= 3
    assert status["delivered"] == len(expected) and status["pending"] == 0
    assert status["state"] == "active" and status["lag_s"] == 0.0
    assert "secret" not in status and "secret_sealed" not in status
    assert account["expected"] == account["acknowledged"] == 300
    assert account["settled"] is True


async def _recorded(settings: Settings, sub_id: str, n: int) -> Subscription | None:
    """The subscription once ``n`` deliveries are recorded (records follow the 2xx)."""
    sub = await subscription(settings, sub_id)
    return sub if sub.delivered >= n else None


async def _have(receiver: Receiver, ids: list[str]) -> bool:
    return receiver.got.ids >= set(ids)


async def _at_least(value: int, n: int) -> bool:
    return value >= n
