"""The ingester writes late notes only while a northbound subscription could be owed the
point (sensornet.northbound.late, ``owed``): none while nobody subscribes, from the moment
a subscription exists (its late readings delivered once, and the readings stored unnoted
before it, inside its backdated start, delivered by the regular read), and every late
point again when the subscriptions cannot be read. Real Mosquitto, InfluxDB, ingester,
receiver and pusher process."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from faultproxy import FaultProxy
from northbound_support import PusherProcess, subscribe
from support import running, wait_until
from test_northbound_late import MS, SENSOR, _acked, _late_settings, _once, _publish

from alarms.northbound.receiver import Receiver
from sensornet.influx import InfluxClient
from sensornet.northbound.late import LATE_MEASUREMENT, OWED_MAX_AGE_S
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester


async def _stored(influx: InfluxClient, n: int) -> bool:
    series = await influx.query('SELECT count("pm25") FROM "air_quality"')
    return bool(series) and series[0]["values"][0][1] >= n


async def _notes(influx: InfluxClient) -> int:
    series = await influx.query(f'SELECT count("point_time") FROM "{LATE_MEASUREMENT}"')
    return int(series[0]["values"][0][1]) if series else 0


async def test_notes_only_while_a_subscription_is_owed_them(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = _late_settings(settings)
    await register_fleet(settings, [SENSOR])
    async with Receiver(None) as receiver, running(run_ingester, settings):
        # nobody subscribes: a backlog of old readings is stored without a single note
        now_ms = time.time_ns() // MS
        unowed = [now_ms - 3_600_000 + i for i in range(50)]
        await _publish(settings, unowed)
        # readings 20-10 s old, stored before the subscription (unnoted) but inside the
        # start it states below: the regular read owes them
        before = await _publish(settings, [now_ms - 20_000 + i * 1000 for i in range(10)])
        await wait_until(lambda: _stored(influx, 60), 20)
        assert await _notes(influx) == 0
        # a subscription backdated 60 s: the ingester sees it within OWED_MAX_AGE_S, and
        # the pusher holds its first read until the unnoted writes are surely stored
        start_ns = (now_ms - 60_000) * MS
        sub_id, receiver.secret = await subscribe(settings, receiver.url, start_ns)
        await asyncio.sleep(OWED_MAX_AGE_S + 0.5)
        pusher = PusherProcess(settings)
        pusher.start()
        try:
            later_ms = time.time_ns() // MS
            late = await _publish(settings, [later_ms - 30_000 + i for i in range(5)])
            old = await _publish(settings, [later_ms - 7_200_000])  # before the start
            await wait_until(lambda: _stored(influx, 66), 20)
            assert await _notes(influx) == 5  # the late ones, not the one before the start
            owed = before + late
            await wait_until(lambda: _has(receiver, owed), 60)
            await asyncio.sleep(settings.northbound_settle_s + 8)  # nothing else comes
        finally:
            assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    assert receiver.got.ids == set(owed), sorted(receiver.got.ids ^ set(owed))
    assert _once(receiver, owed)
    assert old[0] not in receiver.got.ids
    assert await _acked(settings, sub_id) == len(owed)


async def test_unreadable_subscriptions_mean_every_late_point_is_noted(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = _late_settings(settings)
    await register_fleet(settings, [SENSOR])
    async with running(run_ingester, settings):
        now_ms = time.time_ns() // MS
        await _publish(settings, [now_ms - 3_600_000])
        await wait_until(lambda: _stored(influx, 1), 20)
        assert await _notes(influx) == 0
        # the subscriptions table gone (a migration half done, a broken database): the
        # ingester cannot tell whom a point is owed to, so it owes it to everyone
        database = settings.registry_database_url.split("///", 1)[1]
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE northbound_subscriptions RENAME TO nb_away")
        await asyncio.sleep(OWED_MAX_AGE_S + 1.0)
        await _publish(settings, [now_ms - 3_500_000 + i for i in range(3)])
        await wait_until(lambda: _stored(influx, 4), 20)
        assert await _notes(influx) == 3


async def test_a_write_unnoted_before_the_ingester_knew_is_delivered(
    settings: Settings, influx: InfluxClient
) -> None:
    """The creation hold: late readings whose write began before the ingester learned of
    a backdated subscription carry no note and land seconds later; the pusher's first read
    waits until they are stored, so its regular read delivers them."""
    settings = _late_settings(settings).model_copy(update={"influx_timeout_s": 6.0})
    await register_fleet(settings, [SENSOR])
    async with Receiver(None) as receiver, FaultProxy(settings.influx_url).serving() as proxy:
        ingesting = settings.model_copy(update={"influx_url": f"http://127.0.0.1:{proxy.port}"})
        async with running(run_ingester, ingesting):
            proxy.delay_s = 4.0  # within the write timeout (6 s): the write succeeds, late
            proxy.set_mode("slow")
            now_ms = time.time_ns() // MS
            slow = await _publish(settings, [now_ms - 30_000 + i for i in range(3)])
            await asyncio.sleep(0.5)  # the ingester's write has begun, without notes
            sub_id, receiver.secret = await subscribe(
                settings, receiver.url, (now_ms - 60_000) * MS
            )
            pusher = PusherProcess(settings)  # reads InfluxDB itself, not through the proxy
            pusher.start()
            try:
                await wait_until(lambda: _stored(influx, 3), 20)
                proxy.set_mode("ok")
                assert await _notes(influx) == 0
                await wait_until(lambda: _has(receiver, slow), 60)
                await asyncio.sleep(settings.northbound_settle_s + 8)  # nothing else comes
            finally:
                assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    assert receiver.got.ids == set(slow)
    assert _once(receiver, slow)
    assert await _acked(settings, sub_id) == len(slow)


async def _has(receiver: Receiver, ids: list[str]) -> bool:
    return receiver.got.ids >= set(ids)
