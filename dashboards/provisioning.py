"""Files Grafana reads at start-up: data source, dashboard provider, dashboards and alert
rules for the shipped alarm thresholds, written into one folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import expr as ab_expr
from grafana_foundation_sdk.models import alerting as am

from dashboards.build import Basemap, build_dashboards
from dashboards.notifications import notification_provisioning
from dashboards.panels import DATASOURCE, JSON, target, to_json
from sensornet.alarms.rules import Level, Rule, RuleSet, load_rules

FOLDER_UID = "sensornet"
FOLDER_TITLE = "Sensornet"
RULE_GROUP = "sensornet-thresholds"


#: provisioning files name the password's variable; Grafana reads it from its environment
PASSWORD_VARIABLE = "$SENSORNET_GRAFANA_INFLUX_PASSWORD"  # noqa: S105 - a name, not a secret


def datasource(
    influx_url: str, database: str, user: str | None = None, password: str | None = None
) -> JSON:
    """The InfluxDB (InfluxQL) data source, as the read-only user (SENSORNET_INFLUX_READ_USER,
    deploy/README.md). Without ``password`` the password is Grafana's environment variable
    ``SENSORNET_GRAFANA_INFLUX_PASSWORD``, so no secret lands in generated files."""
    out: JSON = {
        "name": "Sensornet InfluxDB",
        "uid": DATASOURCE["uid"],
        "type": "influxdb",
        "access": "proxy",
        "url": influx_url,
        "isDefault": True,
        "jsonData": {"dbName": database, "httpMode": "GET", "timeInterval": "10s"},
        "editable": False,
    }
    if user:
        out["user"] = user
        out["secureJsonData"] = {"password": password or PASSWORD_VARIABLE}
    return out


def _alert_levels(rule: Rule) -> list[tuple[str, tuple[Level, ...]]]:
    """(subdistrict or "", levels): the base rule excludes overridden subdistricts."""
    return [("", rule.thresholds.levels)] + [(area, t.levels) for area, t in rule.overrides.items()]


def alert_rule(rule: Rule, area: str, levels: tuple[Level, ...], excluded: list[str]) -> am.Rule:
    """One Grafana-managed rule: the first non-info level of an alarm rule, per sensor.

    Night levels and escalation stay with the platform's own runner; Grafana alerts give
    the operations centre notifications through its contact points."""
    level = next((lv for lv in levels if lv.severity != "info"), levels[0])
    where = "$timeFilter"
    if area:
        where += f" AND \"subdistrict\" = '{area}'"
    for other in excluded:
        where += f" AND \"subdistrict\" != '{other}'"
    evaluator = ab_expr.ExprTypeThresholdConditionsEvaluator()
    if rule.op == "is_true":
        query = (
            f'SELECT count("{rule.quantity}") FROM "{rule.type}" WHERE {where} '
            f'AND "{rule.quantity}" = true GROUP BY "sensor_id"'
        )
        evaluator = evaluator.type("gt").params([0])
    else:
        query = (
            f'SELECT last("{rule.quantity}") FROM "{rule.type}" WHERE {where} GROUP BY "sensor_id"'
        )
        # above/below levels always carry a threshold (sensornet/alarms/rules.py checks)
        limit = level.threshold if level.threshold is not None else float("nan")
        evaluator = evaluator.type("gt" if rule.op == "above" else "lt").params([limit])
    uid = f"sn-{rule.id}" + (f"-{area}" if area else "")
    influx = (
        ab.Query("A")
        .datasource_uid(DATASOURCE["uid"])
        .relative_time_range(am.RelativeTimeRange(from_val=1800, to=0))
        .model(target(query))
    )
    reduce = (
        ab.Query("B")
        .datasource_uid("__expr__")
        .model(ab_expr.TypeReduce().ref_id("B").expression("A").reducer("last"))
    )
    threshold = (
        ab.Query("C")
        .datasource_uid("__expr__")
        .model(
            ab_expr.TypeThreshold()
            .ref_id("C")
            .expression("B")
            .conditions([ab_expr.ExprTypeThresholdConditions().evaluator(evaluator)])
        )
    )
    return (
        ab.Rule(f"{rule.id}{' ' + area if area else ''}: {level.name}")
        .uid(uid[:40])
        .condition("C")
        .queries([influx, reduce, threshold])
        .for_val(f"{int(rule.min_duration_s)}s")
        .no_data_state("OK")
        .exec_err_state("Error")
        .labels({"severity": level.severity, "sensor_type": rule.type, "rule": rule.id})
        .annotations({"summary": f"{{{{ $labels.sensor_id }}}}: {level.name}"})
        .folder_uid(FOLDER_UID)
        .rule_group(RULE_GROUP)
        .org_id(1)
        .build()
    )  # fmt: skip


def alert_rule_models(rules: RuleSet) -> list[am.Rule]:
    out = []
    for rule in rules.rules:
        areas = list(rule.overrides)
        for area, levels in _alert_levels(rule):
            out.append(alert_rule(rule, area, levels, [] if area else areas))
    return out


#: the keys of the HTTP API's rule (the SDK's model) that the file format has elsewhere
_API_ONLY = ("folderUID", "ruleGroup", "orgID")


def alert_rules(rules: RuleSet) -> JSON:
    """The file form: one group holding every rule (folder, group and org on the group)."""
    out = []
    for model in alert_rule_models(rules):
        data = to_json(model)
        out.append({k: v for k, v in data.items() if k not in _API_ONLY})
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": RULE_GROUP, "folder": FOLDER_TITLE,
             "interval": "1m", "rules": out}
        ],
    }  # fmt: skip


def write_provisioning(
    folder: Path,
    influx_url: str,
    database: str,
    dashboards_path: str | None = None,
    user: str | None = None,
    alertmanager_url: str = "http://127.0.0.1:9093",
    basemap: Basemap | None = None,
) -> list[Path]:
    """Write everything under ``folder``: ``dashboards/*.json`` and ``provisioning/…``
    (alert rules, and their contact point and policy: the platform's Alertmanager).

    ``dashboards_path`` is where Grafana will see the dashboards folder (e.g. in a
    container); default: this folder's absolute path."""
    boards = build_dashboards(basemap=basemap)
    written: list[Path] = []

    def put(path: Path, content: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)

    for uid, board in boards.items():
        put(folder / "dashboards" / f"{uid}.json", json.dumps(board, indent=2, ensure_ascii=False))
    prov = folder / "provisioning"
    put(
        prov / "datasources" / "sensornet.yaml",
        _yaml({"apiVersion": 1, "datasources": [datasource(influx_url, database, user)]}),
    )
    provider = {
        "apiVersion": 1,
        "providers": [{
            "name": "sensornet", "orgId": 1, "folder": FOLDER_TITLE, "folderUid": FOLDER_UID,
            "type": "file", "disableDeletion": True, "allowUiUpdates": False,
            "updateIntervalSeconds": 30,
            "options": {"path": dashboards_path or str((folder / "dashboards").resolve())},
        }],
    }  # fmt: skip
    put(prov / "dashboards" / "sensornet.yaml", _yaml(provider))
    put(prov / "alerting" / "sensornet-rules.yaml", _yaml(alert_rules(load_rules())))
    put(
        prov / "alerting" / "sensornet-notifications.yaml",
        _yaml(notification_provisioning(alertmanager_url)),
    )
    return written


def _yaml(data: Any) -> str:
    return "# generated by `sensornet dashboards build`; do not edit\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True
    )
