"""Every generated Grafana object read back the way grafana-foundation-sdk defines it.

No Grafana server is installable on this machine (no package source offers one), so
nothing here proves a live Grafana loads these objects. What is checked instead:
- every dashboard, alert rule, contact point and notification policy is built with the
  SDK's typed builders and survives the SDK's own models: ``from_json`` then ``to_json``
  gives back exactly what was written (a key the model does not know would be dropped, a
  wrong shape would not parse);
- every attribute of every SDK object we build matches the SDK's type hints (generated
  from Grafana's schema: enums, literals, ints vs strings …), checked by typeguard, but
  for two values Grafana needs against the hints (listed in ``KNOWN``);
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

import typing
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import expr
from grafana_foundation_sdk.models.dashboard import Dashboard
from typeguard import TypeCheckError, check_type

from dashboards.build import Basemap, build_dashboards, build_models
from dashboards.influxql import InfluxQuery, register
from dashboards.notifications import contact_point, notification_policy
from dashboards.panels import to_json
from dashboards.provisioning import alert_rule_models
from sensornet.alarms.rules import load_rules

register()

#: Where Grafana needs a value the SDK's type hints do not allow: the map's centre in
#: decimal degrees (hinted int), and the Alertmanager integration's id
#: (dashboards/notifications.py says why).
KNOWN = {"sn-city.panels[0].options.view.lat", "sn-city.panels[0].options.view.lon",
         "contact-point.type_val"}  # fmt: skip


def _type_errors(obj: object, path: str, out: dict[str, str], seen: set[int]) -> None:
    """Every attribute of an SDK model (or of ours) against its ``__init__``'s hints,
    recursively; a path → message for each mismatch."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            _type_errors(item, f"{path}[{i}]", out, seen)
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            _type_errors(item, f"{path}.{key}", out, seen)
        return
    module = type(obj).__module__
    if not module.startswith(("grafana_foundation_sdk.models", "dashboards.")):
        return
    for name, hint in typing.get_type_hints(type(obj).__init__).items():
        if name == "return" or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        try:
            check_type(value, hint)
        except TypeCheckError as exc:
            out[f"{path}.{name}"] = str(exc)
        _type_errors(value, f"{path}.{name}", out, seen)


def test_every_object_matches_the_sdk_type_hints() -> None:
    errors: dict[str, str] = {}
    for uid, board in build_models().items():
        _type_errors(board.build(), uid, errors, set())
    for rule in alert_rule_models(load_rules()):
        _type_errors(rule, str(rule.uid), errors, set())
    _type_errors(contact_point("http://alertmanager:9093"), "contact-point", errors, set())
    _type_errors(notification_policy(), "policy", errors, set())
    assert set(errors) == KNOWN, {k: v for k, v in errors.items() if k not in KNOWN}


def test_the_type_check_finds_a_wrong_type() -> None:
    board = build_models()["sn-platform"].build()
    board.refresh = 30  # type: ignore[assignment]  # Grafana wants "30s"
    errors: dict[str, str] = {}
    _type_errors(board, "b", errors, set())
    assert set(errors) == {"b.refresh"}


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


def test_panels_fit_the_grid_and_do_not_overlap() -> None:
    for uid, board in build_dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{uid} {p['title']}: {g}"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{uid}: {p['title']} over {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


def test_the_layout_plans_in_the_docs_are_current() -> None:
    """docs/images/layout-*.svg (docs/operations.md) drawn from today's dashboards:
    rerun scripts/dashboard_layout.py when a dashboard changes."""
    import importlib.util

    root = Path(__file__).parent.parent
    spec = importlib.util.spec_from_file_location("layout", root / "scripts/dashboard_layout.py")
    assert spec and spec.loader
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    boards = build_dashboards()
    for uid in layout.UIDS:
        drawn = (root / f"docs/images/layout-{uid}.svg").read_text(encoding="utf-8")
        assert drawn == layout.layout_svg(boards[uid]), f"rerun scripts/dashboard_layout.py ({uid})"
