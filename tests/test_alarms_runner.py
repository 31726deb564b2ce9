"""The alarm runner over real InfluxDB + registry, and the alarm API over HTTP."""

from __future__ import annotations

import time

import httpx
from support import running, wait_until

from alarms.runner import AlarmRunner, run_alarms
from sensornet.alarms.rules import load_rules
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import FieldValue, encode_lines, encode_point
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import register_fleet, run_api

WL = DeviceInfo("WL-T1", "waterlogging", "jingansi", 31.2235, 121.447, "active")
MH = DeviceInfo("MH-T1", "manhole_cover", "beizhan", 31.247, 121.475, "active")
RETIRED = DeviceInfo("MH-T2", "manhole_cover", "beizhan", 31.247, 121.475, "retired")


async def _write(
    influx: InfluxClient, device: DeviceInfo, values: dict[str, FieldValue], at_ns: int
) -> None:
    tags = {"sensor_id": device.id, "subdistrict": device.subdistrict}
    await influx.write(encode_lines([encode_point(device.type, tags, values, at_ns)]))


async def test_runner_raises_escalates_clears_and_survives_restart(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str]
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    await register_fleet(settings, [WL, MH, RETIRED])
    now = time.time_ns()
    await _write(influx, WL, {"depth": 12.0}, now - 600 * 10**9)
    await _write(influx, MH, {"tilt": 1.0, "open": True}, now - 600 * 10**9)
    await _write(influx, RETIRED, {"tilt": 1.0, "open": True}, now - 600 * 10**9)
    async with open_registry(settings.registry_database_url) as engine:
        runner = AlarmRunner(influx, engine, catalogue, load_rules())
        await runner.start()
        raised = await runner.tick()
        assert {(c.sensor_id, c.rule_id, c.level_name) for c in raised} == {
            ("WL-T1", "waterlogging_depth", "water on road"),
            ("MH-T1", "manhole_open", "manhole cover open"),
        }  # the retired sensor raises nothing
        assert await runner.tick() == []  # same readings: nothing new
        await _write(influx, WL, {"depth": 30.0}, now - 300 * 10**9)
        (worse,) = await runner.tick()
        assert worse.level_name == "impassable" and worse.severity == "critical"
        # a restarted runner picks the active alarms up and raises nothing twice
        again = AlarmRunner(influx, engine, catalogue, load_rules())
        await again.start()
        assert await again.tick() == []
        await _write(influx, WL, {"depth": 9.0}, now)  # 9 > 10 - 2: hysteresis keeps it
        assert [c.level for c in await again.tick()] == [0]  # de-escalated to the first level
        await _write(influx, WL, {"depth": 1.0}, now + 10**9)
        (cleared,) = await again.tick()
        assert cleared.level is None


async def test_alarm_api_lists_acknowledges_and_keeps_history(
    settings: Settings,
    influx: InfluxClient,
    engineer_headers: dict[str, str],
    api_keys: dict[str, str],
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    await register_fleet(settings, [WL, MH])
    await _write(influx, WL, {"depth": 27.0}, time.time_ns())
    fast = settings.model_copy(update={"alarm_interval_s": 0.2})
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_api, settings),
        running(run_alarms, fast),
        httpx.AsyncClient(base_url=base, headers=engineer_headers) as http,
    ):

        async def listed() -> list[dict[str, object]]:
            items: list[dict[str, object]] = (await http.get("/alarms")).json()["items"]
            return items

        (alarm,) = await wait_until(listed, timeout_s=10)
        assert alarm["sensor_id"] == "WL-T1" and alarm["unit"] == "cm"
        assert alarm["severity"] == "critical" and alarm["value"] == 27.0
        assert alarm["acknowledged_at"] is None
        # who acknowledges is the calling key, never a name the client writes
        forged = await http.post(f"/alarms/{alarm['id']}/acknowledge", json={"by": "ops-desk"})
        assert forged.status_code == 422
        assert (await http.get("/alarms")).json()["items"][0]["acknowledged_at"] is None
        r = await http.post(f"/alarms/{alarm['id']}/acknowledge", json={"note": "crew sent"})
        assert r.status_code == 200, r.text
        key_id = api_keys["engineer"].split("_")[1]
        assert r.json()["acknowledged_by"] == f"key:{key_id}(test-engineer) [engineer]"
        assert r.json()["note"] == "crew sent"
        unacked = (await http.get("/alarms", params={"unacknowledged": True})).json()
        assert unacked["count"] == 0
        again = await http.post(f"/alarms/{alarm['id']}/acknowledge")  # the note is optional
        assert again.status_code == 200 and again.json()["note"] is None
        missing = await http.post("/alarms/99999/acknowledge")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        await _write(influx, WL, {"depth": 0.0}, time.time_ns())

        async def cleared() -> bool:
            return (await http.get("/alarms")).json()["count"] == 0

        await wait_until(cleared, timeout_s=10)
        past = (await http.get("/alarms/history")).json()["items"]
        assert len(past) == 1 and past[0]["cleared_at"] and not past[0]["active"]
        rules = (await http.get("/alarms/rules")).json()["rules"]
        pm = next(r for r in rules if r["id"] == "pm25_aqi")
        assert pm["unit"] == "µg/m³"
