"""Fault tests on real processes. Each starts from a known set of readings with sequence
numbers and ends by proving, from InfluxDB, that every reading is stored exactly once or
accounted for with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from ingester_process import IngesterProcess
from support import running, wait_until

from gateway_sim.publisher import LivePublisher
from gateway_sim.report import account
from gateway_sim.synthetic import make_readings, messages
from sensornet.accounting import Window, count_stored, device_account
from sensornet.bulk_publisher import BulkPublisher
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_ingester
from wiring.services import InfluxDB, Mosquitto, free_port

pytestmark = pytest.mark.timeout(240)


def readings_epoch_ms() -> int:
    """Readings are timed ``epoch + seq * 100 ms``, the epoch a 10-minute mark 10 to 20
    minutes ago, so the readings of two ``publish`` calls in one test never share a time.
    make_readings ends its readings "now": two calls that started an exact multiple of
    100 ms apart gave a sensor's later readings the times of its earlier ones, InfluxDB
    kept one point per time, and a test waited for readings that had been overwritten
    (5250 of 10000). Calls astride a mark are 10 minutes apart: no seq here (< 6,000)
    reaches across."""
    return int(time.time() * 1000) // 600_000 * 600_000 - 600_000


@pytest.fixture
def fleet() -> list[DeviceInfo]:
    return default_fleet(50)


async def publish(
    settings: Settings, fleet: list[DeviceInfo], n: int, skip: int = 0, pack: int = 1
) -> None:
    epoch = readings_epoch_ms()
    readings = [
        dataclasses.replace(r, ts_ms=epoch + r.seq * 100)
        for r in list(make_readings(fleet, n + skip))[skip:]
    ]
    blaster = BulkPublisher(
        settings.mqtt_host,
        settings.mqtt_port,
        f"pub-{skip}",
        "simulator",
        settings.fleet_password(),
        window=500,
    )
    await blaster.publish_all(messages(settings.topic_prefix, iter(readings), pack))


async def create_session(settings: Settings) -> None:
    """The ingester's persistent session exists before readings are sent, as in production."""
    async with running(run_ingester, settings):
        pass


async def all_stored(influx: InfluxClient, fleet: list[DeviceInfo], n: int) -> None:
    types = {d.type for d in fleet}

    seen: list[int] = []

    async def done() -> bool:
        seen.append(await count_stored(influx, types))
        assert seen[-1] <= n, f"{seen[-1]} stored of {n}: something stored twice"
        return seen[-1] == n

    try:
        await wait_until(done, timeout_s=120, interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{seen[-1]} of {n} readings stored") from exc
    for device in fleet[:5]:  # no gaps, no duplicates, no restarts, per device
        account = await device_account(influx, device.id, device.type, Window.recent(3600, 60))
        seqs = account.seqs
        assert (account.missing, account.rejected_total, seqs.resets) == (0, 0, 0), account
        assert account.stored == seqs.distinct == seqs.epochs[0].span, account


@contextlib.asynccontextmanager
async def slow_influx(
    settings: Settings, **changes: object
) -> AsyncIterator[tuple[FaultProxy, Settings]]:
    """InfluxDB behind a slowing proxy and small batches, so a kill lands mid-stream."""
    async with FaultProxy(settings.influx_url).serving() as proxy:
        proxy.set_mode("slow")
        yield (
            proxy,
            replace_settings(
                settings,
                ingest_batch_size=200,
                ingest_receive_maximum=400,
                influx_url=f"http://127.0.0.1:{proxy.port}",
                **changes,
            ),
        )


async def test_kill_9_of_the_ingester_mid_stream(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo]
) -> None:
    async with slow_influx(settings) as (proxy, settings):
        await register_fleet(settings, fleet)
        await create_session(settings)
        await publish(settings, fleet, 20_000)
        ingester = IngesterProcess(settings)
        ingester.start()
        await wait_until(lambda: _some_stored(influx, fleet), timeout_s=60)
        ingester.kill()  # some batches written, others in flight and unacknowledged
        partial = await count_stored(influx, {d.type for d in fleet})
        assert 0 < partial < 20_000
        proxy.set_mode("ok")
        ingester.start()  # comes back as itself and gets the unacknowledged rest
        await all_stored(influx, fleet, 20_000)
        assert ingester.stop() == 0


async def test_sigterm_drains_and_acks_in_flight_then_restart_completes(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo]
) -> None:
    async with slow_influx(settings) as (proxy, settings):
        await register_fleet(settings, fleet)
        await create_session(settings)
        await publish(settings, fleet, 10_000)
        ingester = IngesterProcess(settings)
        ingester.start()
        await wait_until(lambda: _some_stored(influx, fleet), timeout_s=60)
        assert ingester.stop() == 0  # SIGTERM: writes and acks what it holds, then exits
        assert "stopped with unacknowledged" not in ingester.log.read_text()
        proxy.set_mode("ok")
        ingester.start()
        await all_stored(influx, fleet, 10_000)
        assert ingester.stop() == 0


async def test_kill_9_of_influxdb_mid_stream_and_restart(
    settings: Settings, fleet: list[DeviceInfo], tmp_path: Path
) -> None:
    own = InfluxDB(
        name="influxd", home=tmp_path / "own-influx", port=free_port(), rpc_port=free_port()
    )
    own.start()
    settings = replace_settings(
        settings,
        influx_url=f"http://127.0.0.1:{own.port}",
        influx_timeout_s=2.0,
        ingest_batch_size=500,
    )
    try:
        async with InfluxClient(settings.influx_url, settings.influx_db) as influx:
            await influx.create_database()
            await register_fleet(settings, fleet)
            async with running(run_ingester, settings):
                await publish(settings, fleet, 5_000)
                await wait_until(lambda: _some_stored(influx, fleet), timeout_s=60)
                own.kill()
                await publish(settings, fleet, 5_000, skip=5_000)  # arrives while it is down
                spool = settings.state_dir / "spool" / settings.ingest_client_id
                await wait_until(lambda: _has_files(spool), timeout_s=60)
                own.start()
                await all_stored(influx, fleet, 10_000)
                await wait_until(lambda: _empty(spool), timeout_s=60)
    finally:
        own.stop()


async def test_broker_restart(
    settings: Settings, influx: InfluxClient, broker: Mosquitto, fleet: list[DeviceInfo]
) -> None:
    await register_fleet(settings, fleet)
    await create_session(settings)
    await publish(settings, fleet, 3_000)
    broker.stop()  # clean restart: the broker saves queued messages and sessions
    broker.start()
    async with running(run_ingester, settings):
        await publish(settings, fleet, 3_000, skip=3_000)
        broker.stop()
        broker.start()  # the ingester reconnects as itself
        await publish(settings, fleet, 3_000, skip=6_000)
        await all_stored(influx, fleet, 9_000)


async def test_influxdb_answering_500s_and_timeouts(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo]
) -> None:
    async with FaultProxy(settings.influx_url).serving() as proxy:
        via_proxy = replace_settings(
            settings,
            influx_url=f"http://127.0.0.1:{proxy.port}",
            influx_timeout_s=1.0,
            ingest_batch_size=300,
        )
        await register_fleet(settings, fleet)
        async with running(run_ingester, via_proxy):
            await publish(settings, fleet, 2_000)
            await wait_until(lambda: _some_stored(influx, fleet), timeout_s=60)
            proxy.set_mode("error")
            await publish(settings, fleet, 2_000, skip=2_000)
            proxy.set_mode("hang")
            await publish(settings, fleet, 2_000, skip=4_000)
            spool = settings.state_dir / "spool" / settings.ingest_client_id
            await wait_until(lambda: _has_files(spool), timeout_s=60)
            proxy.set_mode("ok")
            await all_stored(influx, fleet, 6_000)


async def test_poison_message_among_good_ones(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo]
) -> None:
    """A line InfluxDB refuses (field type conflict) is isolated by bisection: the good
    lines of its batch are stored, the bad one becomes a dead letter."""
    await register_fleet(settings, fleet)
    victim = next(d for d in fleet if d.type == "air_quality")
    sample = next(r for r in make_readings(fleet, 200) if r.device.id == victim.id)
    # an earlier, wrongly typed write makes every float pm25 of this shard a conflict
    # its shard is what counts: 1 ns after the reading, never before it, since a reading
    # at an exact shard-group boundary (seq 0 on an epoch that is one) put the conflict
    # 1 ns into the previous shard and nothing was refused (seen 2026-12-07 00:10-00:20)
    ts_ns = (readings_epoch_ms() + sample.seq * 100) * 10**6 + 1
    conflict = f'air_quality,sensor_id=OTHER,subdistrict=x pm25="text" {ts_ns}'
    await influx.write(conflict.encode() + b"\n")
    async with running(run_ingester, settings):
        await publish(settings, fleet, 200)

        async def settled() -> bool:
            letters = rows(await influx.query('SELECT * FROM "dead_letter"'))
            return len(letters) >= 1

        await wait_until(settled, timeout_s=60)
    letters = rows(await influx.query('SELECT * FROM "dead_letter"'))
    others = {d.type for d in fleet} - {"air_quality"}
    stored_others = await count_stored(influx, others)
    aq = sum(1 for r in make_readings(fleet, 200) if r.device.type == "air_quality")
    assert stored_others == 200 - aq  # every good reading of the batches is stored
    assert {r["reason"] for r in letters} == {"influx_rejected"}
    assert len(letters) == aq  # each refused reading accounted for, with its seq
    account = await device_account(influx, victim.id, victim.type, Window.recent(3600, 60))
    assert account.rejected == {"influx_rejected": account.received}


async def test_two_ingesters_share_load_one_killed_and_restarted(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo]
) -> None:
    async with slow_influx(settings, ingest_share_group="ingest") as (proxy, settings):
        await register_fleet(settings, fleet)
        a, b = IngesterProcess(settings, "ingester-a"), IngesterProcess(settings, "ingester-b")
        a.start()
        b.start()
        await wait_until(lambda: _subscribed(a, b), timeout_s=30)
        await publish(settings, fleet, 10_000)
        await wait_until(lambda: _some_stored(influx, fleet), timeout_s=60)
        a.kill()
        await publish(settings, fleet, 10_000, skip=10_000)  # b takes the new share alone
        proxy.set_mode("ok")
        a.start()  # comes back as itself: its session still holds its unacked share
        await all_stored(influx, fleet, 20_000)
        assert a.stop() == 0 and b.stop() == 0


def replace_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


async def _some_stored(influx: InfluxClient, fleet: list[DeviceInfo]) -> bool:
    return await count_stored(influx, {d.type for d in fleet}) > 0


async def _has_files(path: Path) -> bool:
    return path.exists() and any(path.glob("*.lp"))


async def _empty(path: Path) -> bool:
    return not any(path.glob("*.lp"))


async def _subscribed(*ingesters: IngesterProcess) -> bool:
    # the ingester says "receiving" once every input is ready (MQTT: the SUBACK came)
    return all(p.log.exists() and " receiving (" in p.log.read_text() for p in ingesters)


async def test_clean_broker_restart_under_the_simulator_loses_nothing_acknowledged(
    settings: Settings, influx: InfluxClient, broker: Mosquitto
) -> None:
    """Issue 23: a clean Mosquitto restart (3 s down) while the simulator's devices publish.
    They keep every unacknowledged reading and send it again after reconnecting, so the
    exact account holds: every reading is stored, none was lost on a device or by the
    platform. Before, the devices connected with a clean session and gmqtt dropped their
    in-flight messages at the reconnect."""
    fleet = default_fleet(40)
    await register_fleet(settings, fleet)
    catalogue = load_catalogue()
    start_ns = time.time_ns() - 10**9
    publisher = LivePublisher(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=settings.fleet_password(),
        topic_prefix=settings.topic_prefix,
        fleet=fleet,
        catalogue=catalogue,
        first_report_within_s=0.3,
        interval_scale=0.05 / 60,  # the 60 s types every 50 ms: ~ 300 readings/s
        gateway_flush_s=0.2,
        drain_s=30,
    )
    stop = asyncio.Event()
    async with running(run_ingester, settings):
        run = asyncio.create_task(publisher.run(stop))
        await asyncio.sleep(2)
        broker.stop()  # SIGTERM: a clean restart, the broker saves its sessions
        in_flight = 0  # the most readings the devices held unacknowledged while it was down
        for _ in range(30):
            links = set(publisher._links.values())
            in_flight = max(in_flight, sum(link.storage.in_flight for link in links))
            await asyncio.sleep(0.1)
        broker.start()
        await asyncio.sleep(2)
        stop.set()
        await asyncio.wait_for(run, 60)
        report = await account(
            influx, publisher.truth, {d.id: d.type for d in fleet}, catalogue, start_ns
        )
    totals = report.totals
    assert in_flight > 0, "the restart caught no reading in flight: the test proves nothing"
    assert totals["sent"] == publisher.stats.sent > 500, totals
    assert totals["lost_on_devices"] == 0, report.as_json()
    assert totals["missing"] == 0 and totals["extra"] == 0, report.as_json()
    assert totals["stored"] == totals["expected_stored"] == totals["sent"], report.as_json()
    assert report.exact
