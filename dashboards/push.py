"""Upload dashboards, the data source and alert rules through the Grafana HTTP API, with
``grafana-client`` (maintained; the older ``grafana-api`` package is abandoned)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.build import build_dashboards
from dashboards.panels import JSON
from dashboards.provisioning import FOLDER_TITLE, FOLDER_UID, alert_rules, datasource
from sensornet.alarms.rules import load_rules
from sensornet.errors import SensornetError


class GrafanaPushError(SensornetError):
    """Grafana refused an upload; the message names the object and Grafana's answer."""


@dataclass
class PushReport:
    datasource: str = ""
    folder: str = ""
    dashboards: list[str] = field(default_factory=list)
    alert_rules: list[str] = field(default_factory=list)


def push(
    grafana: GrafanaApi, influx_url: str, database: str, *, with_alerts: bool = True
) -> PushReport:
    """Create or update everything; idempotent (uids are fixed)."""
    report = PushReport()
    ds = datasource(influx_url, database)
    try:
        grafana.datasource.update_datasource_by_uid(ds["uid"], ds)
        report.datasource = "updated"
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise GrafanaPushError(f"data source {ds['uid']}: {exc.message}") from exc
        grafana.datasource.create_datasource(ds)
        report.datasource = "created"
    try:
        grafana.folder.get_folder(FOLDER_UID)
        report.folder = "exists"
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise GrafanaPushError(f"folder {FOLDER_UID}: {exc.message}") from exc
        grafana.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.folder = "created"
    for uid, board in build_dashboards().items():
        body: dict[str, Any] = {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                                "message": "sensornet dashboards push"}  # fmt: skip
        try:
            grafana.dashboard.update_dashboard(body)
        except GrafanaClientError as exc:
            raise GrafanaPushError(f"dashboard {uid}: {exc.message}") from exc
        report.dashboards.append(uid)
    if with_alerts:
        group = alert_rules(load_rules())["groups"][0]
        for rule in group["rules"]:
            payload: JSON = rule | {"folderUID": FOLDER_UID, "ruleGroup": group["name"],
                                    "orgID": 1}  # fmt: skip
            try:
                grafana.alertingprovisioning.update_alertrule(rule["uid"], payload)
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise GrafanaPushError(f"alert rule {rule['uid']}: {exc.message}") from exc
                grafana.alertingprovisioning.create_alertrule(payload)
            report.alert_rules.append(rule["uid"])
    return report
