"""Every generated Grafana object read back the way grafana-foundation-sdk defines it.

No Grafana server is installable on this machine (no package source offers one), so
nothing here proves a live Grafana loads these objects. What is checked instead:
- every dashboard, alert rule, contact point and notification policy is built with the
  SDK's typed builders and survives the SDK's own models: ``from_json`` then ``to_json``
  gives back exactly what was written (a key the model does not know would be dropped, a
  wrong shape would not parse);
- every panel's type is one the SDK has a panel plugin for, every target parses as the
  InfluxQL query model (dashboards/influxql.py), which refuses fields it does not know,
  and every alert expression parses as the SDK's server-side expression type;
- the dashboards also validate against dashboards/dashboard.schema.json
  (tests/test_dashboards_queries.py) and, by hand, against Grafana's published JSON
  schemas for the same Grafana version (scripts/grafana_schema_check.py; result and the
  two places Grafana's real format differs from that schema in docs/dashboards.md).
tests/test_dashboards_queries.py runs every panel query against a real InfluxDB and
tests/test_dashboards_push.py the push client against a replayed Grafana HTTP exchange.
"""

from __future__ import annotations

from typing import Any

import pytest
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import expr
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.build import Basemap, build_dashboards
from dashboards.influxql import InfluxQuery, register
from dashboards.notifications import contact_point, notification_policy
from dashboards.panels import to_json
from dashboards.provisioning import alert_rule_models
from sensornet.alarms.rules import load_rules

register()


def test_every_dashboard_round_trips_through_the_sdk_models() -> None:
    boards = build_dashboards(basemap=Basemap("http://tiles.internal/{z}/{x}/{y}.png"))
    assert len(boards) == 7
    for uid, board in boards.items():
        model = Dashboard.from_json(board)
        assert to_json(model) == board, uid
        for panel in model.panels or []:
            assert cogruntime.panelcfg_config(panel.type_val) is not None, panel.type_val
            assert panel.targets, f"{uid} {panel.title}: no query"
            for t in panel.targets:
                assert isinstance(t, InfluxQuery), f"{uid} {panel.title}: {type(t)}"
                assert t.raw_query and t.query.startswith(("SELECT", "SHOW"))


def test_a_field_the_models_do_not_know_does_not_survive() -> None:
    board = build_dashboards()["sn-platform"]
    board["panels"][0]["targets"][0]["querry"] = "SELECT 1"  # a typo
    with pytest.raises(ValueError, match="querry"):
        Dashboard.from_json(board)
    board = build_dashboards()["sn-platform"]
    board["panels"][0]["gridPosition"] = {"x": 0}  # not a panel field: dropped on reading
    assert to_json(Dashboard.from_json(board)) != board


def test_the_map_is_typed_and_its_basemap_is_a_setting() -> None:
    city = build_dashboards(basemap=Basemap("http://tiles.internal/{z}/{x}/{y}.png", "© us"))
    geomap = next(p for p in city["sn-city"]["panels"] if p["type"] == "geomap")
    assert geomap["options"]["basemap"] == {
        "type": "xyz",
        "name": "Basemap",
        "config": {"url": "http://tiles.internal/{z}/{x}/{y}.png", "attribution": "© us"},
    }
    layers = {layer["filterData"]["options"]: layer for layer in geomap["options"]["layers"]}
    assert set(layers) == {"A", "B"}  # subdistricts, and the chosen area's sensors
    assert {t["refId"] for t in geomap["targets"]} == {"A", "B"}
    default = build_dashboards()["sn-city"]
    geomap = next(p for p in default["panels"] if p["type"] == "geomap")
    assert geomap["options"]["basemap"]["type"] == "default"


def test_the_active_alarms_table_has_what_the_operators_need() -> None:
    city = build_dashboards()["sn-city"]
    table = next(p for p in city["panels"] if p["title"] == "Active alarms")
    query = table["targets"][0]["query"]
    for column in ('"since"', '"acknowledged"', '"in maintenance"', '"level"'):
        assert column in query
    for tag in ('"sensor_id"', '"subdistrict"', '"rule"', '"severity"'):
        assert tag in query.split("GROUP BY")[1]


def _round_trip(cls: Any, data: dict[str, Any]) -> None:
    assert to_json(cls.from_json(data)) == data


def test_alert_rules_round_trip_and_their_expressions_are_typed() -> None:
    models = alert_rule_models(load_rules())
    assert len(models) >= 10
    assert len({m.uid for m in models}) == len(models)
    for model in models:
        data = to_json(model)
        _round_trip(am.Rule, data)
        assert data["condition"] == "C" and data["folderUID"] == "sensornet"
        a, b, c = data["data"]
        assert isinstance(cogruntime.dataquery_from_json(a["model"], "influxdb"), InfluxQuery)
        assert isinstance(cogruntime.dataquery_from_json(b["model"], "__expr__"), expr.TypeReduce)
        threshold = cogruntime.dataquery_from_json(c["model"], "__expr__")
        assert isinstance(threshold, expr.TypeThreshold)
        assert threshold.expression == "B"


def test_contact_point_and_policy_round_trip() -> None:
    point = to_json(contact_point("http://alertmanager:9093/"))
    _round_trip(am.ContactPoint, point)
    # Grafana's integration id, not the SDK's enum value (dashboards/notifications.py)
    assert point["type"] == "prometheus-alertmanager"
    assert point["settings"] == {"url": "http://alertmanager:9093"}
    policy = to_json(notification_policy())
    _round_trip(am.NotificationPolicy, policy)
    assert policy["receiver"] == point["name"]
