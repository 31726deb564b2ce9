"""Readings stored later than the settle time behind the pusher's cursor are pushed too:
a device's backfill published over MQTT, a reading in the band where the regular read and
the late notes meet, and the ingester's spool replayed after an InfluxDB outage. Real
Mosquitto, InfluxDB, ingester and receiver, the pusher as its own process; each event
arrives exactly once (no fault: no duplicates) and the accounting counts each once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from faultproxy import FaultProxy
from northbound_support import PusherProcess, fast, subscribe
from support import running, wait_until

from alarms.northbound.receiver import Receiver
from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient
from sensornet.northbound import store
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from sensornet.topics import device_topic
from wiring.parts import register_fleet, run_api, run_ingester

SENSOR = DeviceInfo("AQ-LATE1", "air_quality", "beizhan", 31.25, 121.46, "active")
MS = 1_000_000


def _late_settings(settings: Settings) -> Settings:
    # settle 2 s: a point over 1 s old when written is noted; notes read 2 + 5 s after
    # "owed" (the default): notes only while a subscription could be owed the point
    return fast(
        settings, northbound_settle_s=2.0, influx_timeout_s=2.0, northbound_late_notes="owed"
    )


async def _publish(settings: Settings, times_ms: list[int]) -> list[str]:
    """One reading per time, as the device sends it; the event ids the pusher owes."""
    publisher = BulkPublisher(
        settings.mqtt_host, settings.mqtt_port, "late-device", settings.mqtt_fleet_user,
        settings.fleet_password(),
    )  # fmt: skip
    topic = device_topic(settings.topic_prefix, SENSOR.id, "readings").encode()
    await publisher.publish_all(
        (topic, orjson.dumps({"ts": ms, "pm25": float(i)})) for i, ms in enumerate(times_ms)
    )
    return [f"readings:{SENSOR.id}:{ms * MS}" for ms in times_ms]


def _once(receiver: Receiver, ids: list[str]) -> bool:
    counts = Counter(e["id"] for e in receiver.got.events)
    return all(counts[i] == 1 for i in ids) and len(receiver.got.events) == len(counts)


async def _acked(settings: Settings, sub_id: str) -> int:
    async with open_registry(settings.registry_database_url) as engine:
        return (await store.acked(engine, sub_id, 0, 2**40)).get("readings", 0)


async def test_backfill_and_band_readings_pushed_once(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    settings = _late_settings(settings)
    await register_fleet(settings, [SENSOR])
    now_ms = time.time_ns() // MS
    start_ns = (now_ms - 600_000) * MS  # the subscription's events: the last 10 minutes
    async with Receiver(None) as receiver:
        sub_id, receiver.secret = await subscribe(settings, receiver.url, start_ns)
        pusher = PusherProcess(settings)
        async with running(run_ingester, settings):
            pusher.start()
            try:
                live = await _publish(settings, [now_ms + i for i in range(5)])
                await wait_until(lambda: _has(receiver, live), 30)
                # the device comes back with what it kept: 8 to 2 minutes old, and one
                # from before the subscription (not owed)
                now_ms = time.time_ns() // MS
                backfill = await _publish(
                    settings, [now_ms - m * 60_000 for m in range(8, 1, -1)] + [now_ms - 900_000]
                )
                # a reading 1.5 s old: between the pusher's horizon (2 s) and the noting
                # age (1 s); the regular read leaves it to its note
                band = await _publish(settings, [time.time_ns() // MS - 1500])
                owed = live + backfill[:-1] + band
                await wait_until(lambda: _has(receiver, owed), 40)
                await wait_until(lambda: _count(settings, sub_id, len(owed)), 20)
                await asyncio.sleep(settings.northbound_settle_s + 8)  # nothing else comes
                account = await _accounting(settings, api_keys["engineer"], sub_id, start_ns)
            finally:
                assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    readings = account["streams"]["readings"]
    assert readings["expected"] == readings["acknowledged"] == len(owed), account
    assert readings["pending"] == 0
    assert receiver.got.bad_signatures == 0
    assert receiver.got.ids == set(owed)
    assert _once(receiver, owed)
    assert await _acked(settings, sub_id) == len(owed)
    # the late ones came after the live ones, each with its own time
    order = [e["id"] for e in receiver.got.events]
    assert order.index(backfill[0]) > order.index(live[-1])


async def test_spool_replayed_after_an_influxdb_outage_is_pushed(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = _late_settings(settings)
    await register_fleet(settings, [SENSOR])
    start_ns = time.time_ns() - 60 * 10**9
    async with Receiver(None) as receiver, FaultProxy(settings.influx_url).serving() as proxy:
        sub_id, receiver.secret = await subscribe(
            settings, receiver.url, start_ns, kinds=("readings", "status")
        )
        ingesting = settings.model_copy(
            update={"influx_url": f"http://127.0.0.1:{proxy.port}"}
        )  # the ingester writes through the proxy; the pusher reads InfluxDB itself
        pusher = PusherProcess(settings)
        async with running(run_ingester, ingesting):
            pusher.start()
            try:
                first = await _publish(settings, [time.time_ns() // MS])
                await wait_until(lambda: _has(receiver, first), 30)
                proxy.set_mode("error")  # InfluxDB refuses: the ingester spools
                during = []
                for _ in range(4):
                    during += await _publish(settings, [time.time_ns() // MS])
                    await asyncio.sleep(1.0)
                await _publish_status(settings, "offline")  # stamped now, stored later
                spool = ingesting.state_dir / "spool" / ingesting.ingest_client_id
                await wait_until(lambda: _any_file(spool), 20)
                await asyncio.sleep(settings.northbound_settle_s + 1)  # the cursor moves on
                proxy.set_mode("ok")  # the replay stores them, all late by now
                await wait_until(lambda: _has(receiver, first + during), 40)
                await wait_until(lambda: _count(settings, sub_id, 1 + len(during)), 20)
                await wait_until(lambda: _statuses(receiver), 20)
            finally:
                assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    readings = [e for e in receiver.got.events if e["type"] == "city.sensornet.reading.v1"]
    assert {e["id"] for e in readings} == set(first + during)
    assert _once(receiver, first + during)
    assert await _acked(settings, sub_id) == 1 + len(during)
    (status,) = await _statuses(receiver)  # once
    assert status["data"] == {"state": "offline"} and status["subject"] == SENSOR.id


async def _accounting(settings: Settings, key: str, sub_id: str, start_ns: int) -> Any:
    """The API's account of the subscription from its start to the next whole minute
    (and its status says nothing is pending)."""
    minute = 60 * 10**9
    window = {
        "start": datetime.fromtimestamp(start_ns // minute * 60, UTC).isoformat(),
        "end": datetime.fromtimestamp((time.time_ns() // minute + 1) * 60, UTC).isoformat(),
    }
    async with (
        running(run_api, settings),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as api,
    ):
        answer = await api.get(f"/northbound/subscriptions/{sub_id}/accounting", params=window)
        status = await api.get(f"/northbound/subscriptions/{sub_id}")
    assert answer.status_code == 200, answer.text
    assert status.status_code == 200 and status.json()["pending"] == 0, status.text
    return answer.json()


async def _publish_status(settings: Settings, state: str) -> None:
    publisher = BulkPublisher(
        settings.mqtt_host, settings.mqtt_port, "late-device-status", settings.mqtt_fleet_user,
        settings.fleet_password(),
    )  # fmt: skip
    topic = device_topic(settings.topic_prefix, SENSOR.id, "status").encode()
    await publisher.publish_all([(topic, state.encode())])


async def _statuses(receiver: Receiver) -> list[dict[str, Any]]:
    return [e for e in receiver.got.events if e["type"] == "city.sensornet.status.v1"]


async def _has(receiver: Receiver, ids: list[str]) -> bool:
    return receiver.got.ids >= set(ids)


async def _count(settings: Settings, sub_id: str, n: int) -> bool:
    return await _acked(settings, sub_id) >= n


async def _any_file(directory: object) -> bool:
    from pathlib import Path

    d = Path(str(directory))
    return d.exists() and any(d.iterdir())
