"""Load and backfill modes, and the ``simulate`` command end to end, on the real broker,
ingester and InfluxDB."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from support import running

from gateway_sim.backfill import backfill
from gateway_sim.faults import FaultPlan
from gateway_sim.fleet import build_fleet
from gateway_sim.load import LoadPlan, merge_truth, run_load
from gateway_sim.report import account, stored_counts
from gateway_sim.signals import City
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester
from wiring.services import free_port


async def test_load_mode_with_faults_is_accounted_exactly(
    settings: Settings, influx: InfluxClient, tmp_path: Path
) -> None:
    fleet = build_fleet(load_catalogue(), load_district(), 30, seed=11, gateways=False)
    await register_fleet(settings, fleet)
    plan = LoadPlan(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=settings.fleet_password(),
        prefix=settings.topic_prefix,
        rate=400,
        duration_s=1.5,
        connections=3,
        max_in_flight=20,
        faults=FaultPlan(rate=0.1, seed=11),
        truth_path=tmp_path / "truth.jsonl",
    )
    start_ns = time.time_ns() - 10**9
    async with running(run_ingester, settings):
        progress: list[tuple[int, int, int]] = []
        results, _ = await asyncio.to_thread(
            run_load, plan, fleet, 2, lambda *a: progress.append(a)
        )
        truth = merge_truth(results)
        report = await account(
            influx, truth, {d.id: d.type for d in fleet}, load_catalogue(), start_ns
        )
    sent = sum(r.sent for r in results)
    assert sent == sum(truth.sent.values()) + sum(truth.not_sent.values())
    assert 300 <= sent <= 700  # about rate x duration
    assert sum(r.connected for r in results) == 3
    assert progress and progress[-1][0] == sent
    lines = (tmp_path / "truth.jsonl").read_bytes().splitlines()
    assert len(lines) == sum(truth.faults.values()) > 0
    assert report.totals["rejected"] == report.totals["expected_rejected"] > 0
    assert report.exact, report.as_json()


async def test_backfill_writes_the_ingesters_schema(
    settings: Settings, influx: InfluxClient
) -> None:
    catalogue = load_catalogue()
    fleet = build_fleet(catalogue, load_district(), 20, seed=8)
    city = City(fleet, catalogue, load_district(), seed=8)
    end = time.time()
    written = await backfill(influx, city, catalogue, 1.0, end)
    expected = {d.id: round(86_400 / catalogue.get(d.type).interval_s) for d in fleet}
    for d in fleet:  # one report per interval, give or take the edges of the window
        assert abs(written[d.id] - expected[d.id]) <= 1, d.id
    stored = await stored_counts(
        influx, {d.id: d.type for d in fleet}, catalogue, int((end - 86_400) * 1e9)
    )
    assert stored == written
    tags = rows(await influx.query('SHOW TAG KEYS FROM "air_quality"'))
    assert {r["tagKey"] for r in tags} == {"sensor_id", "subdistrict"}
    fields = {
        r["fieldKey"]: r["fieldType"]
        for r in rows(await influx.query('SHOW FIELD KEYS FROM "air_quality"'))
    }
    assert fields == {
        "pm25": "float",
        "pm10": "float",
        "no2": "float",
        "o3": "float",
        "co": "float",
        "seq": "integer",
    }
    seqs = rows(
        await influx.query('SELECT max("seq"), count("seq") FROM "noise" GROUP BY "sensor_id"')
    )
    for r in seqs:  # seq counts up from 0 without gaps
        assert r["max"] == r["count"] - 1


@pytest.mark.parametrize(
    ("fleet_identity", "http_share"),
    [(True, 0.0), (False, 0.0), (True, 0.3)],
    ids=["fleet-identity", "own-credentials", "http-share"],
)
async def test_simulate_command_reports_injected_faults(
    settings: Settings, influx: InfluxClient, tmp_path: Path, fleet_identity: bool,
    http_share: float,
) -> None:  # fmt: skip
    """With the (test-only) fleet identity, or without it: then the simulator gives each
    device of its own fleet its own credentials through the registry and the broker. With
    ``--http-share``, part of the fleet pushes over the ingester's HTTP input, those
    devices with their own credentials issued for them alone."""
    if http_share:
        settings = settings.model_copy(
            update={"ingest_inputs": ["mqtt", "http"], "ingest_http_port": free_port()}
        )
    env = {
        **{k: v for k, v in os.environ.items() if k != "SENSORNET_MQTT_FLEET_PASSWORD"},
        "SENSORNET_STATE_DIR": str(settings.state_dir),
        "SENSORNET_MQTT_PORT": str(settings.mqtt_port),
        "SENSORNET_INFLUX_URL": settings.influx_url,
        "SENSORNET_INFLUX_DB": settings.influx_db,
    }
    if fleet_identity:
        env["SENSORNET_MQTT_FLEET_PASSWORD"] = settings.fleet_password()
    http_args = ["--http-share", str(http_share)] if http_share else []
    if http_share:
        env["SENSORNET_INGEST_INPUTS"] = "mqtt,http"
        env["SENSORNET_INGEST_HTTP_PORT"] = str(settings.ingest_http_port)
    truth = tmp_path / "gt.jsonl"
    async with running(run_ingester, settings):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "simulate",
            "--sensors",
            "30",
            "--rounds",
            "3",
            "--interval-scale",
            "0.00005",
            "--faults",
            "0.3",
            "--ground-truth",
            str(truth),
            "--report",
            "--json",
            *http_args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode())  # stdout is the one JSON document, nothing else
    assert "waiting for the account to settle" in err.decode()  # the wait's spinner
    assert summary["sent"] + summary["report"]["totals"]["not_sent"] == 90
    assert summary["faults"] == len(truth.read_bytes().splitlines()) > 0
    assert summary["report"]["exact"] is True, summary["report"]
    assert summary["report"]["totals"]["missing"] == 0
    own = "each simulated device got its own MQTT credentials" in err.decode()
    assert own is not fleet_identity
    totals = summary["report"]["totals"]
    if http_share:
        assert "pushing over HTTP got their own credentials" in err.decode()
        assert 0 < totals["sent_over_http"] < summary["sent"]
        assert totals["stored_over_http"] > 0 and totals["lost_on_devices_over_http"] == 0, (
            summary["http_answers"],
            err.decode()[-3000:],
        )
        assert set(summary["http_answers"]) <= {"0", "200", "422", "429"}, summary["http_answers"]
    else:
        assert "sent_over_http" not in totals
