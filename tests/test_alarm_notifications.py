"""The whole path, as deployed: a reading in InfluxDB, the alarm runner (run_alarms, from
settings) raising it, a real Alertmanager notifying a webhook with the labels and the
link back to the sensor; acknowledging through the API silencing it (author: the key's
name), un-acknowledging expiring the silence; a maintenance window set through the API
and the CLI silencing a subdistrict while the alarm is still recorded and the operations
view says so; the runner's /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from alert_receivers import hook_routing, http_receiver
from support import running, wait_until
from typer.testing import CliRunner

from alarms.alertmanager import alertmanager_client
from alarms.runner import run_alarms
from cli.main import app
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient, rows
from sensornet.lineprotocol import FieldValue, encode_lines, encode_point
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.alerting import alertmanager_service
from wiring.parts import register_fleet, run_api
from wiring.services import free_port

WL = DeviceInfo("WL-N1", "waterlogging", "jingansi", 31.2235, 121.447, "active")
WL2 = DeviceInfo("WL-N2", "waterlogging", "beizhan", 31.247, 121.475, "active")


async def _write(influx: InfluxClient, device: DeviceInfo, values: dict[str, FieldValue]) -> None:
    tags = {"sensor_id": device.id, "subdistrict": device.subdistrict}
    await influx.write(encode_lines([encode_point(device.type, tags, values, time.time_ns())]))


async def test_reading_to_receiver_acknowledge_and_maintenance(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str], tmp_path: Path
) -> None:
    await apply_storage_layout(influx, settings, load_catalogue())
    await register_fleet(settings, [WL, WL2])
    with http_receiver() as hook:
        routing = hook_routing(tmp_path, hook.url)
        metrics_port = free_port()
        s = settings.model_copy(
            update={
                "alertmanager_url": f"http://127.0.0.1:{free_port()}",
                "alert_routing_file": routing,
                "alert_link_base": "https://city.example/ops",
                "alarm_interval_s": 0.2,
                "alarm_metrics_port": metrics_port,
            }
        )
        am = alertmanager_service(s, home=tmp_path / "am")
        am.start()
        base = f"http://{s.api_host}:{s.api_port}"
        try:
            async with (
                running(run_api, s),
                running(run_alarms, s),
                httpx.AsyncClient(base_url=base, headers=engineer_headers) as http,
                alertmanager_client(s.alertmanager_url) as amc,
            ):
                await _write(influx, WL, {"depth": 27.0})

                def told(sensor: str) -> list[dict[str, Any]]:
                    return [
                        a
                        for n in hook.bodies("/hook")
                        for a in n["alerts"]
                        if a["labels"]["sensor"] == sensor and a["status"] == "firing"
                    ]

                async def wl_told() -> list[dict[str, Any]]:
                    return told("WL-N1")

                (alert, *_) = await wait_until(wl_told, timeout_s=20)
                assert alert["labels"]["rule"] == "waterlogging_depth"
                assert alert["labels"]["severity"] == "critical"
                assert alert["labels"]["sensor_type"] == "waterlogging"
                assert alert["labels"]["subdistrict"] == "jingansi"
                assert alert["generatorURL"] == "https://city.example/ops/sensors/WL-N1/view"
                (listed,) = (await http.get("/alarms")).json()["items"]
                assert alert["labels"]["alarm_id"] == str(listed["id"])
                assert listed["in_maintenance"] is False

                # acknowledged through the API: a silence by the key's name, no repeats
                r = await http.post(f"/alarms/{listed['id']}/acknowledge", json={"note": "crew"})
                assert r.status_code == 200, r.text

                async def silences() -> list[dict[str, Any]]:
                    return [s for s in await amc.silences() if s["status"]["state"] == "active"]

                (silence,) = await wait_until(silences, timeout_s=10)
                assert silence["createdBy"] == "test-engineer"
                assert silence["comment"].endswith(": crew")
                await _sleep_rounds()
                seen = len(told("WL-N1"))
                await _sleep_rounds(3.0)  # past repeat_interval: silenced, so nothing new
                assert len(told("WL-N1")) == seen

                r = await http.post(f"/alarms/{listed['id']}/unacknowledge")
                assert r.status_code == 200 and r.json()["acknowledged_at"] is None

                async def no_silence() -> bool:
                    return await silences() == []

                await wait_until(no_silence, timeout_s=10)

                # a maintenance window for beizhan through the API: recorded, not notified
                r = await http.post(
                    "/maintenance",
                    json={"subdistrict": "beizhan", "ends_at": "2099-01-01T00:00:00Z",
                          "reason": "cable works"},
                )  # fmt: skip
                assert r.status_code == 422  # longer than 90 days: a mistake
                ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                r = await http.post(
                    "/maintenance",
                    json={"subdistrict": "beizhan", "ends_at": ends, "reason": "cable works"},
                )
                assert r.status_code == 201, r.text
                window = r.json()
                assert window["active"] and window["created_by"].startswith("key:")

                async def maintenance_silence() -> list[dict[str, Any]]:
                    return [
                        s for s in await silences() if s["comment"].startswith("sensornet:maint")
                    ]

                await wait_until(maintenance_silence, timeout_s=10)
                await _write(influx, WL2, {"depth": 27.0})

                async def recorded() -> list[dict[str, Any]]:
                    items = (await http.get("/alarms", params={"subdistrict": "beizhan"})).json()
                    found: list[dict[str, Any]] = items["items"]
                    return found

                (in_works,) = await wait_until(recorded, timeout_s=10)
                assert in_works["in_maintenance"] is True
                await _sleep_rounds(2.0)
                assert told("WL-N2") == []  # recorded, nobody notified
                listed_windows = (await http.get("/maintenance")).json()
                assert [w["id"] for w in listed_windows["items"]] == [window["id"]]

                # the operations view marks the sensors under maintenance
                view = rows(
                    await influx.query(
                        "SELECT last(maintenance) AS m FROM sensor_liveness GROUP BY sensor_id"
                    )
                )
                assert {r["sensor_id"]: r["m"] for r in view} == {"WL-N1": False, "WL-N2": True}

                r = await http.post(f"/maintenance/{window['id']}/end")
                assert r.status_code == 200 and not r.json()["active"]

                async def wl2_told() -> list[dict[str, Any]]:
                    return told("WL-N2")

                await wait_until(wl2_told, timeout_s=15)  # notifications resume
                assert (await http.post("/maintenance/999/end")).status_code == 404

                # the runner's /metrics: round latency histogram, dependencies, liveness
                async with httpx.AsyncClient() as plain:
                    text = (await plain.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                assert "sensornet_alarm_round_seconds_bucket" in text
                assert 'sensornet_dependency_up{address="127.0.0.1:' in text
                assert 'sensornet_alarm_active{severity="critical"} 2.0' in text
                assert 'sensornet_subdistrict_sensors{state="online",subdistrict="beizhan"}' in text
                assert "sensornet_alarm_alertmanager_up 1.0" in text
                # the API's: latency histograms per route template, no key needed
                async with httpx.AsyncClient(base_url=base) as anonymous:
                    api_text = (await anonymous.get("/metrics")).text
                assert (
                    'sensornet_api_request_seconds_bucket{code="2xx",le="0.005",method="GET",'
                    'route="/alarms"}' in api_text
                )
                assert 'route="/maintenance/{window_id}/end"' in api_text
                assert "WL-N1" not in api_text  # a path's values never become labels
        finally:
            am.stop()


async def _sleep_rounds(seconds: float = 1.0) -> None:
    await asyncio.sleep(seconds)


def test_maintenance_from_the_cli(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    asyncio.run(_register(url))
    runner = CliRunner()
    args = ["alarms", "maintenance"]
    r = runner.invoke(app, [*args, "start", "--sensor", "WL-N1", "--hours", "2", "--url", url,
                            "--reason", "lid replaced"])  # fmt: skip
    assert r.exit_code == 0, r.output
    window = json.loads(r.stdout)
    assert window["sensor_id"] == "WL-N1" and window["created_by"].startswith("cli:")
    listed = json.loads(runner.invoke(app, [*args, "list", "--url", url]).stdout)
    assert [w["id"] for w in listed] == [window["id"]]
    r = runner.invoke(app, [*args, "end", str(window["id"]), "--url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(runner.invoke(app, [*args, "list", "--url", url]).stdout) == []
    # bad input: a clear error, exit 1, nothing stored
    for bad in (
        ["--sensor", "NOPE", "--hours", "1"],
        ["--subdistrict", "atlantis", "--hours", "1"],
        ["--sensor", "WL-N1", "--subdistrict", "beizhan", "--hours", "1"],
        ["--sensor", "WL-N1", "--hours", "-1"],
    ):
        r = runner.invoke(app, [*args, "start", *bad, "--url", url])
        assert r.exit_code == 1 and "error:" in r.output, (bad, r.output)
    assert json.loads(runner.invoke(app, [*args, "list", "--url", url]).stdout) == []


def test_check_routing_command(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["alarms", "check-routing"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ok"] is True
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 1\nreceivers: {x: {email: {to: [nobody]}}}\ndefault: [x]\n")
    r = runner.invoke(app, ["alarms", "check-routing", str(bad)])
    assert r.exit_code == 1 and "receivers.x.email.to" in r.output


async def _register(url: str) -> None:
    from sensornet.registry.store import open_registry, upsert_devices

    async with open_registry(url) as engine:
        await upsert_devices(engine, [WL])


def test_write_config_for_services_run_elsewhere(tmp_path: Path) -> None:
    """What deploy/compose.yaml and the systemd units run: both files written, checked by
    amtool and promtool, the SMTP password only in its 0600 file."""
    env = {
        "SENSORNET_ALERT_SECRETS": json.dumps({"smtp.password": "mail-secret"}),
        "SENSORNET_ALERT_SMTP_USER": "sensornet",
    }
    r = CliRunner().invoke(
        app,
        ["alarms", "write-config", "--out", str(tmp_path), "--alertmanager", "am:9093",
         "--target", "sensornet-api=api:8000", "--target", "sensornet-alarms=alarms:9465"],
        env=env,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    files = json.loads(r.stdout)
    am = Path(files["alertmanager"]).read_text()
    assert "mail-secret" not in am and "smtp_auth_password_file" in am
    secret = tmp_path / "alertmanager" / "secrets" / "smtp.password"
    assert secret.read_text() == "mail-secret" and secret.stat().st_mode & 0o777 == 0o600
    prometheus = yaml.safe_load(Path(files["prometheus"]).read_text())
    jobs = {c["job_name"]: c["static_configs"][0]["targets"] for c in prometheus["scrape_configs"]}
    assert jobs == {"sensornet-api": ["api:8000"], "sensornet-alarms": ["alarms:9465"]}
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["am:9093"]
    bad = CliRunner().invoke(app, ["alarms", "write-config", "--out", str(tmp_path),
                                   "--target", "no-address"])  # fmt: skip
    assert bad.exit_code == 2 and "job=host:port" in bad.output


def test_bench_alarms_runs_end_to_end() -> None:
    """A smoke test of `sensornet bench alarms` (its figures are docs/benchmarks.md's):
    every alarm reaches the receiver; no speed is asserted."""
    r = CliRunner().invoke(app, ["bench", "alarms", "--alarms", "3", "--interval", "0.5",
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["delivered"] == 3 and result["lost"] == 0
    assert 0 < result["p50_s"] <= result["p99_s"] <= result["max_s"]
