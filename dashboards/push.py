"""Upload dashboards, the data source and alert rules through the Grafana HTTP API.

A small client on httpx (already a dependency) rather than a Grafana client library; checked
on 2026-11-25 (docs/decisions.md): every ``grafana-client`` release from 4.0.0 (March 2024)
to the current 5.1.4 (October 2026) requires ``niquests>=3.4,<4`` with no extra to avoid it,
and niquests (3.21.2) requires ``urllib3-future``, whose wheel installs a ``.pth`` hook that
rewrites the environment's ``urllib3`` at every interpreter start (here it broke
requests-based tools such as schemathesis). The last release on plain ``requests``, 3.11.2
(March 2024), is the end of a line that gets no more releases. ``grafana-api-sdk`` 0.9.1
(June 2026, on httpx) raises a bare ``Exception`` for a failed call (a missing object,
which ``push`` creates, cannot be told from a refusal), opens a client per call and takes
alert rules only as its own model. The five endpoints used here are stable parts of
Grafana's HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from dashboards.build import Basemap, build_dashboards
from dashboards.panels import JSON, to_json
from dashboards.provisioning import FOLDER_TITLE, FOLDER_UID, alert_rule_models, datasource
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


class GrafanaHttp:
    """The Grafana HTTP API calls ``push`` needs; a 404 comes back as ``None``."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def call(self, what: str, method: str, path: str, body: JSON | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise GrafanaPushError(f"{what}: Grafana unreachable ({exc})") from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise GrafanaPushError(f"{what}: {response.status_code} {message}")
        return response.json() if response.content else {}


def push(
    grafana: GrafanaHttp,
    influx_url: str,
    database: str,
    *,
    with_alerts: bool = True,
    user: str | None = None,
    password: str | None = None,
    basemap: Basemap | None = None,
) -> PushReport:
    """Create or update everything; idempotent (uids are fixed). ``user``/``password``:
    the read-only InfluxDB user the data source queries as."""
    report = PushReport()
    ds = datasource(influx_url, database, user, password)
    what = f"data source {ds['uid']}"
    if grafana.call(what, "PUT", f"/api/datasources/uid/{ds['uid']}", ds) is None:
        grafana.call(what, "POST", "/api/datasources", ds)
        report.datasource = "created"
    else:
        report.datasource = "updated"
    what = f"folder {FOLDER_UID}"
    if grafana.call(what, "GET", f"/api/folders/{FOLDER_UID}") is None:
        grafana.call(what, "POST", "/api/folders", {"title": FOLDER_TITLE, "uid": FOLDER_UID})
        report.folder = "created"
    else:
        report.folder = "exists"
    for uid, board in build_dashboards(basemap=basemap).items():
        body: dict[str, Any] = {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                                "message": "sensornet dashboards push"}  # fmt: skip
        grafana.call(f"dashboard {uid}", "POST", "/api/dashboards/db", body)
        report.dashboards.append(uid)
    if with_alerts:
        for model in alert_rule_models(load_rules()):  # the HTTP API's shape, from the SDK
            payload: JSON = to_json(model)
            what = f"alert rule {payload['uid']}"
            path = f"/api/v1/provisioning/alert-rules/{payload['uid']}"
            if grafana.call(what, "PUT", path, payload) is None:
                grafana.call(what, "POST", "/api/v1/provisioning/alert-rules", payload)
            report.alert_rules.append(payload["uid"])
    return report
