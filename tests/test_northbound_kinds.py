"""Every kind a subscription can ask for, from what the platform really stores: readings,
a device's status, an alarm the real alarm runner raises, and aggregates per minute;
a subdistrict filter keeps another area's sensor out of all of them."""

from __future__ import annotations

import time

from northbound_support import fast, subscribe
from support import running, wait_until

from alarms.northbound.pusher import run_pusher
from alarms.northbound.receiver import Receiver
from alarms.runner import AlarmRunner
from sensornet.alarms.rules import load_rules
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.northbound.spec import Filter
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from wiring.parts import register_fleet

WL = DeviceInfo("WL-K1", "waterlogging", "beizhan", 31.247, 121.475, "active")
AQ = DeviceInfo("AQ-K1", "air_quality", "jingansi", 31.2235, 121.447, "active")
MINUTE = 60 * 10**9


async def test_readings_status_alarms_and_aggregates(
    settings: Settings, influx: InfluxClient
) -> None:
    settings = fast(settings)
    await register_fleet(settings, [WL, AQ])
    bucket = (time.time_ns() // MINUTE - 2) * MINUTE  # a whole minute, 1-2 minutes ago
    lines = [
        encode_point("waterlogging", {"sensor_id": WL.id, "subdistrict": "beizhan"},
                     {"depth": depth}, bucket + k * 10 * 10**9)
        for k, depth in enumerate((30.0, 32.0, 34.0), start=1)
    ] + [
        encode_point("air_quality", {"sensor_id": AQ.id, "subdistrict": "jingansi"},
                     {"pm25": 300.0}, bucket + 10**9),
    ]  # fmt: skip
    await influx.write(encode_lines(lines))
    async with Receiver(None) as receiver:
        _, receiver.secret = await subscribe(
            settings, receiver.url, bucket,
            ("readings", "status", "alarms", "aggregates"),
            Filter(subdistricts=("beizhan",)), "1m",
        )  # fmt: skip
        now = time.time_ns()
        await influx.write(
            encode_lines([
                encode_point("device_status", {"sensor_id": WL.id}, {"state": "online"}, now),
                encode_point("device_status", {"sensor_id": AQ.id}, {"state": "online"}, now),
            ])
        )  # fmt: skip
        async with open_registry(settings.registry_database_url) as engine:
            runner = AlarmRunner(influx, engine, load_catalogue(), load_rules())
            await runner.start()
            assert WL.id in {c.sensor_id for c in await runner.tick()}
        async with running(run_pusher, settings):
            got = await wait_until(lambda: _types(receiver, 6), 30)
    by_type: dict[str, list[dict[str, object]]] = {}
    for e in got:
        by_type.setdefault(str(e["type"]), []).append(e)
    assert {str(e["subject"]) for e in got} == {WL.id}  # the other subdistrict filtered out
    readings = by_type["city.sensornet.reading.v1"]
    assert [r["data"] for r in readings] == [{"values": {"depth": d}} for d in (30.0, 32.0, 34.0)]
    (status,) = by_type["city.sensornet.status.v1"]
    assert status["data"] == {"state": "online"} and status["subdistrict"] == "beizhan"
    (alarm,) = by_type["city.sensornet.alarm.v1"]
    assert alarm["data"]["change"] == "raised"  # type: ignore[index]
    assert alarm["data"]["rule"] == "waterlogging_depth"  # type: ignore[index]
    assert alarm["data"]["value"] == 34.0  # type: ignore[index]
    (aggregate,) = by_type["city.sensornet.aggregate.v1"]
    assert aggregate["data"] == {
        "resolution": "1m",
        "start": aggregate["time"],
        "end": aggregate["data"]["end"],  # type: ignore[index]
        "values": {"depth": {"mean": 32.0, "min": 30.0, "max": 34.0, "count": 3}},
    }
    assert receiver.got.bad_signatures == 0


async def _types(receiver: Receiver, n: int) -> list[dict[str, object]] | None:
    got = receiver.got.unique
    return got if len(got) >= n else None
