"""Every panel query (and variable query, and alert-rule query) of every generated
dashboard, with Grafana's macros and template variables expanded, runs against a real
InfluxDB holding simulated data and must return data. The JSON validates against
dashboards/dashboard.schema.json."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from query_fixtures import sample_values, write_history

from alarms.runner import AlarmRunner
from dashboards.build import build_dashboards
from dashboards.macros import expand, panel_queries, variable_queries
from dashboards.provisioning import alert_rules, write_provisioning
from sensornet.alarms.rules import load_rules
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.registry.maintenance import add_window
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import default_fleet, register_fleet

AREA = "jiangninglu"  # every type gets a sensor here, so the Subdistrict dashboard has data


async def _simulated_city(settings: Settings, influx: InfluxClient) -> list[Any]:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = default_fleet(2 * len(catalogue.types))
    first_of_type: set[str] = set()
    for i, d in enumerate(fleet):
        if d.type not in first_of_type:
            first_of_type.add(d.type)
            fleet[i] = dataclasses.replace(d, subdistrict=AREA)
    await register_fleet(settings, fleet)
    await write_history(influx, catalogue, fleet, hours=1)
    now = time.time_ns()
    rng = random.Random(3)
    lines = []
    for k in range(60):  # 10 min of ingester health every 10 s
        at = now - (60 - k) * 10 * 10**9
        lines.append(encode_point(
            "platform_ingest", {"ingester": "ingester-1"},
            {"stored": 1000 * k, "received_readings": 1000 * k + 5, "rejected": k,
             "write_errors": k // 10, "spool_bytes": 100 * k, "spool_readings": k,
             "batch_latency_ms": 20.0 + rng.random(), "lag_ms": 50.0 + rng.random(),
             "pending_bytes": 4096 * (k % 5)},
            at,
        ))  # fmt: skip
        lines.append(
            encode_point("platform_rejects", {"ingester": "ingester-1", "reason": "range"},
                         {"count": 3 * k}, at)
        )  # fmt: skip
    for d in fleet:
        lines.append(encode_point(
            "dead_letter", {"device": d.id, "reason": "range"},
            {"detail": "pm25 out of range", "topic": f"city/v1/{d.id}/readings",
             "payload_b64": "e30=", "payload_bytes": 2},
            now - 60 * 10**9,
        ))  # fmt: skip
        lines.append(encode_point("device_status", {"sensor_id": d.id}, {"state": "online"}, now))
    # an active alarm for the alarm panels: a flooded road
    flooded = next(d for d in fleet if d.type == "waterlogging")
    lines.append(encode_point(
        flooded.type, {"sensor_id": flooded.id, "subdistrict": flooded.subdistrict},
        sample_values(catalogue, flooded.type, rng) | {"depth": 30.0}, now,
    ))  # fmt: skip
    await influx.write(encode_lines(lines))
    async with open_registry(settings.registry_database_url) as engine:
        # and under maintenance, for the maintenance panel (its alarm is still recorded)
        until = datetime.now(UTC) + timedelta(hours=1)
        await add_window(engine, sensor_id=flooded.id, ends_at=until, by="test")
        runner = AlarmRunner(influx, engine, catalogue, load_rules())
        await runner.start()
        changes = await runner.tick()
        assert any(c.sensor_id == flooded.id for c in changes)
    return fleet


def _has_data(series: list[dict[str, Any]]) -> bool:
    for s in series:
        for row in s.get("values") or []:
            if any(v is not None for c, v in zip(s["columns"], row, strict=True) if c != "time"):
                return True
    return False


async def test_every_panel_query_returns_data(settings: Settings, influx: InfluxClient) -> None:
    await _simulated_city(settings, influx)
    catalogue = load_catalogue()
    boards = build_dashboards()
    assert set(boards) == {"sn-city", "sn-subdistrict", "sn-sensor", "sn-air-noise",
                           "sn-water", "sn-traffic", "sn-platform"}  # fmt: skip
    empty: list[str] = []
    ran = 0
    for uid, board in boards.items():
        variables = {
            v["name"]: v.get("current", {}).get("value", "")
            for v in board.get("templating", {}).get("list", [])
        }
        variables["subdistrict"] = variables["area"] = AREA  # the map: that area's sensors too
        types = list(catalogue.types) if uid == "sn-sensor" else [variables.get("type", "")]
        for type_id in types:
            variables["type"] = type_id
            for name, query in variable_queries(board):
                series = await influx.query(expand(query, variables))
                assert _has_data(series), f"{uid} variable {name} is empty for {type_id}"
                variables[name] = series[0]["values"][0][1]  # Grafana selects the first
            numeric = (
                any(q.kind in ("float", "int") for q in catalogue.get(type_id).quantities.values())
                if type_id
                else True
            )
            for title, query in panel_queries(board):
                if title.startswith("Readings (numeric") and not numeric:
                    continue  # a type with no numeric quantity (parking) has no curve to draw
                ran += 1
                if not _has_data(await influx.query(expand(query, variables))):
                    empty.append(f"{uid} [{type_id}] {title}: {expand(query, variables)}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert ran >= 60


async def test_alert_rule_queries_run(settings: Settings, influx: InfluxClient) -> None:
    await _simulated_city(settings, influx)
    group = alert_rules(load_rules())["groups"][0]
    with_data = 0
    for rule in group["rules"]:
        query = rule["data"][0]["model"]["query"]
        series = await influx.query(expand(query, {}, time_range="30m"))  # must not error
        with_data += _has_data(series)
    assert with_data >= len(group["rules"]) // 2  # overrides for areas may have no sensor


def test_dashboards_validate_against_schema() -> None:
    schema = json.loads(
        (resources.files("dashboards") / "dashboard.schema.json").read_text(encoding="utf-8")
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    for board in build_dashboards().values():
        jsonschema.validate(board, schema)
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
    broken = build_dashboards()["sn-city"] | {"panels": [{"type": "geomap"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_units_and_thresholds_come_from_catalogue_and_rules() -> None:
    air = build_dashboards()["sn-air-noise"]
    pm25 = next(p for p in air["panels"] if "PM2.5" in p["title"])
    steps = pm25["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 35, 75, 115, 150, 250]
    assert pm25["fieldConfig"]["defaults"]["unit"] == "conμgm3"
    water = build_dashboards()["sn-water"]
    hydrant = next(p for p in water["panels"] if "Water pressure" in p["title"])
    colours = [s["color"] for s in hydrant["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert colours == ["red", "orange", "green"]  # below 0.05 dry, below 0.14 low, else ok


def test_build_writes_dashboards_and_provisioning(tmp_path: Path) -> None:
    written = write_provisioning(tmp_path, "http://influxdb:8086", "sensornet", "/var/lib/dash")
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert "provisioning/datasources/sensornet.yaml" in names
    assert "provisioning/dashboards/sensornet.yaml" in names
    assert "provisioning/alerting/sensornet-rules.yaml" in names
    assert len([n for n in names if n.startswith("dashboards/")]) == 7
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/sensornet.yaml").read_text())
    assert ds["datasources"][0]["url"] == "http://influxdb:8086"
    assert ds["datasources"][0]["uid"] == "sensornet-influx"
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/sensornet.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/dash"
    rules = yaml.safe_load((tmp_path / "provisioning/alerting/sensornet-rules.yaml").read_text())
    uids = [r["uid"] for r in rules["groups"][0]["rules"]]
    assert "sn-pm25_aqi" in uids and "sn-waterlogging_depth-beizhan" in uids
    assert len(uids) == len(set(uids))


def test_the_data_source_queries_as_the_read_user_and_keeps_no_password(tmp_path: Path) -> None:
    write_provisioning(tmp_path, "http://influxdb:8086", "sensornet", user="sensornet_read")
    text = (tmp_path / "provisioning/datasources/sensornet.yaml").read_text()
    source = yaml.safe_load(text)["datasources"][0]
    assert source["user"] == "sensornet_read"
    assert source["secureJsonData"] == {"password": "$SENSORNET_GRAFANA_INFLUX_PASSWORD"}
