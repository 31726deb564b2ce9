"""An alarm change decided in the round InfluxDB dies is not lost: InfluxDB (a real one of
the test's own) is killed after the runner has read the reading and before it writes the
alarm's ``alarm_event`` point; rounds fail while it is down; once it is back (and the
pusher's cursor has passed the change's time) the next round stores the change, once, with
a late note, the SQL record follows, and a northbound receiver gets it exactly once. The
alarm's end, decided afterwards with InfluxDB up, takes the regular path, once and after it.
Real InfluxDB, registry, pusher process and receiver."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from alert_receivers import hook_routing, http_receiver
from faultproxy import FaultProxy
from northbound_support import PusherProcess, fast, subscribe
from support import running, wait_until

from alarms.alertmanager import alertmanager_client
from alarms.northbound.receiver import Receiver
from alarms.runner import AlarmRunner, run_alarms
from sensornet.alarms.rules import load_rules
from sensornet.alarms.store import active_alarms
from sensornet.catalogue import load_catalogue
from sensornet.errors import InfluxError
from sensornet.influx import InfluxClient, rows
from sensornet.lineprotocol import FieldValue, encode_lines, encode_point
from sensornet.northbound import store
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.alerting import alertmanager_service
from wiring.parts import register_fleet
from wiring.services import InfluxDB, free_port

WL = DeviceInfo("WL-OB1", "waterlogging", "jingansi", 31.2235, 121.447, "active")
ALARM = "city.sensornet.alarm.v1"


class DiesBeforeAlarmWrite(InfluxClient):
    """The runner's client: when armed, the first write carrying alarm events SIGKILLs
    the test's InfluxDB just before it is sent, so it meets a dead server (connection
    refused), after the round's reads worked."""

    def __init__(self, url: str, database: str, service: InfluxDB) -> None:
        super().__init__(url, database, timeout_s=2.0)
        self.service, self.armed = service, False

    async def write(self, body: bytes, **kw: Any) -> None:
        if self.armed and b"alarm_event" in body:
            self.armed = False
            self.service.kill()
        await super().write(body, **kw)


async def _write(influx: InfluxClient, values: dict[str, FieldValue], at_ns: int) -> None:
    tags = {"sensor_id": WL.id, "subdistrict": WL.subdistrict}
    await influx.write(encode_lines([encode_point(WL.type, tags, values, at_ns)]))


async def _points(influx: InfluxClient, measurement: str) -> list[dict[str, Any]]:
    return rows(await influx.query(f'SELECT * FROM "{measurement}"'))


def _alarm_events(receiver: Receiver) -> list[dict[str, Any]]:
    return [e for e in receiver.got.events if e["type"] == ALARM]


@pytest.fixture
def own_influx(tmp_path: Path) -> Any:
    service = InfluxDB(
        name="influxd", home=tmp_path / "own-influx", port=free_port(), rpc_port=free_port()
    )
    service.start()
    yield service
    service.stop()


async def test_alarm_decided_as_influxdb_dies_is_stored_and_pushed_once(
    settings: Settings, own_influx: InfluxDB
) -> None:
    settings = fast(
        settings, influx_url=f"http://127.0.0.1:{own_influx.port}", influx_timeout_s=2.0
    )
    catalogue = load_catalogue()
    start_ns = time.time_ns() - 60 * 10**9
    async with (
        DiesBeforeAlarmWrite(settings.influx_url, settings.influx_db, own_influx) as influx,
        open_registry(settings.registry_database_url) as engine,
        Receiver(None) as receiver,
    ):
        await influx.create_database()
        await apply_storage_layout(influx, settings, catalogue)
        await register_fleet(settings, [WL])
        sub_id, receiver.secret = await subscribe(
            settings, receiver.url, start_ns, kinds=("alarms",)
        )
        runner = AlarmRunner(influx, engine, catalogue, load_rules())
        await runner.start()
        pusher = PusherProcess(settings)
        pusher.start()
        try:
            await _write(influx, {"depth": 27.0}, time.time_ns())
            influx.armed = True
            with pytest.raises(InfluxError):
                await runner.tick()  # read the reading, decided the alarm, write refused
            assert not influx.armed
            with pytest.raises(InfluxError):
                await runner.tick()  # still down: nothing read, nothing lost
            own_influx.start()
            await asyncio.sleep(4.0)  # the pusher reads on: its cursor passes the change
            (raised,) = await runner.tick()
            assert raised.sensor_id == WL.id and raised.level_name == "impassable"
            (active,) = await active_alarms(engine)
            assert active.sensor_id == WL.id and active.level_name == "impassable"
            (point,) = await _points(influx, "alarm_event")
            assert point["kind"] == "raised" and point["sensor_id"] == WL.id
            (note,) = await _points(influx, "northbound_late")
            assert note["measurement"] == "alarm_event" and note["point_time"] > 0

            # pushed from the note (read influx_timeout_s + 5 s after it): once
            await wait_until(lambda: _got(receiver, 1), 40)
            # the alarm's end, decided with InfluxDB up: the regular path
            await _write(influx, {"depth": 1.0}, time.time_ns())
            (cleared,) = await runner.tick()
            assert cleared.level is None
            await wait_until(lambda: _got(receiver, 2), 30)
            await asyncio.sleep(settings.influx_timeout_s + 5.0 + 2.0)  # any second copy
            acked = await store.acked(engine, sub_id, 0, 2**40)
            assert acked.get("alarms") == 2  # the accounting counts each once
        finally:
            assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    events = _alarm_events(receiver)
    assert Counter(e["id"] for e in events) == Counter({e["id"]: 1 for e in events})
    assert [e["data"]["change"] for e in events] == ["raised", "cleared"]
    assert events[0]["subject"] == WL.id and events[0]["data"]["level_name"] == "impassable"
    assert len(await _points_after(settings, "alarm_event")) == 2


async def _got(receiver: Receiver, n: int) -> bool:
    return len(_alarm_events(receiver)) >= n


async def _points_after(settings: Settings, measurement: str) -> list[dict[str, Any]]:
    async with InfluxClient(settings.influx_url, settings.influx_db) as influx:
        return await _points(influx, measurement)


async def test_alarm_write_slower_than_the_pushers_settle_is_pushed_once(
    settings: Settings, influx: InfluxClient
) -> None:
    """InfluxDB takes 1.6 s to store the alarm change (a proxy holds the write back before
    passing it on), longer than the 1 s the pusher waits for alarm changes: its cursor has
    passed the change's time when it lands. The note written after the slow write has it
    pushed, once."""
    settings = fast(settings, influx_timeout_s=4.0)
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    await register_fleet(settings, [WL])
    async with (
        FaultProxy(settings.influx_url).serving() as proxy,
        InfluxClient(f"http://127.0.0.1:{proxy.port}", settings.influx_db, timeout_s=4.0) as slow,
        open_registry(settings.registry_database_url) as engine,
        Receiver(None) as receiver,
    ):
        sub_id, receiver.secret = await subscribe(
            settings, receiver.url, time.time_ns() - 60 * 10**9, kinds=("alarms",)
        )
        runner = AlarmRunner(slow, engine, catalogue, load_rules())
        await runner.start()
        pusher = PusherProcess(settings)
        pusher.start()
        try:
            await asyncio.sleep(1.0)  # the pusher is reading
            await _write(influx, {"depth": 27.0}, time.time_ns())
            proxy.delay_s = 1.6
            proxy.set_mode("slow")
            (raised,) = await runner.tick()
            proxy.set_mode("ok")
            assert raised.level_name == "impassable"
            (note,) = await _points(influx, "northbound_late")
            assert note["measurement"] == "alarm_event"
            await _write(influx, {"depth": 1.0}, time.time_ns())
            (cleared,) = await runner.tick()
            assert cleared.level is None
            await wait_until(lambda: _got(receiver, 2), 40)
            await asyncio.sleep(settings.influx_timeout_s + 5.0 + 1.0)  # any second copy
            acked = await store.acked(engine, sub_id, 0, 2**40)
            assert acked.get("alarms") == 2
        finally:
            assert pusher.stop() == 0, pusher.log.read_text()[-2000:]
    events = _alarm_events(receiver)
    assert [e["data"]["change"] for e in events] == ["raised", "cleared"]
    assert len({e["id"] for e in events}) == 2


async def test_alertmanager_down_then_back_and_influxdb_outage(
    settings: Settings, own_influx: InfluxDB, tmp_path: Path
) -> None:
    """Alertmanager down as the alarm fires: told once it is back (a failed post is posted
    again). Then InfluxDB down for longer than four resends: the runner keeps re-sending
    the active alarm from SQL, so Alertmanager does not resolve it meanwhile."""
    with http_receiver() as hook:
        routing = hook_routing(tmp_path, hook.url)
        s = settings.model_copy(
            update={
                "influx_url": f"http://127.0.0.1:{own_influx.port}",
                "influx_timeout_s": 1.0,
                "alertmanager_url": f"http://127.0.0.1:{free_port()}",
                "alert_routing_file": routing,
                "alarm_interval_s": 0.2,
                "alert_resend_s": 1.0,  # Alertmanager ends an alert not re-sent within 4 s
                "alarm_metrics_port": free_port(),
            }
        )
        am = alertmanager_service(s, home=tmp_path / "am")
        async with InfluxClient(s.influx_url, s.influx_db) as influx:
            await influx.create_database()
            await apply_storage_layout(influx, s, load_catalogue())
            await register_fleet(s, [WL])
            try:
                async with (
                    running(run_alarms, s),
                    alertmanager_client(s.alertmanager_url) as amc,
                    open_registry(s.registry_database_url) as engine,
                ):
                    await _write(influx, {"depth": 27.0}, time.time_ns())

                    async def recorded() -> bool:
                        return len(await active_alarms(engine)) == 1

                    await wait_until(recorded, 20)
                    await asyncio.sleep(1.0)  # rounds whose posts fail
                    am.start()

                    async def told() -> list[dict[str, Any]]:
                        return [
                            a
                            for n in hook.bodies("/hook")
                            for a in n["alerts"]
                            if a["labels"]["sensor"] == WL.id and a["status"] == "firing"
                        ]

                    await wait_until(told, 30)
                    own_influx.kill()
                    await asyncio.sleep(7.0)  # past the 4 s Alertmanager gives an alert
                    alerts = [a for a in await amc.alerts() if a["labels"]["sensor"] == WL.id]
                    assert [a["status"]["state"] for a in alerts] == ["active"]
                    own_influx.start()
            finally:
                am.stop()
