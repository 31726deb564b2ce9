"""``sensornet dashboards build|push``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Grafana dashboards as code: build files, push via the HTTP API.",
                  no_args_is_help=True)  # fmt: skip


@app.command("build")
def build(
    out: Annotated[Path, typer.Option(help="Folder to write into")] = Path("build/grafana"),
    influx_url: Annotated[
        str | None, typer.Option(help="InfluxDB URL as Grafana sees it (default: settings)")
    ] = None,
    dashboards_path: Annotated[
        str | None, typer.Option(help="Dashboards folder as Grafana sees it (containers)")
    ] = None,
    alertmanager_url: Annotated[
        str | None,
        typer.Option(help="Alertmanager as Grafana sees it (default: SENSORNET_ALERTMANAGER_URL)"),
    ] = None,
) -> None:
    """Write dashboards/*.json and provisioning/{datasources,dashboards,alerting}; the data
    source queries as SENSORNET_INFLUX_READ_USER, its password from Grafana's environment
    variable SENSORNET_GRAFANA_INFLUX_PASSWORD."""
    from dashboards.build import Basemap
    from dashboards.provisioning import write_provisioning
    from sensornet.settings import Settings

    settings = Settings()
    written = write_provisioning(
        out,
        influx_url or settings.influx_url,
        settings.influx_db,
        dashboards_path,
        user=settings.influx_reader[0],
        alertmanager_url=alertmanager_url or settings.alertmanager_url or "http://127.0.0.1:9093",
        basemap=Basemap(settings.map_tiles_url, settings.map_tiles_attribution),
    )
    typer.echo(json.dumps({"folder": str(out), "files": [str(p) for p in written]}))


@app.command("push")
def push(
    url: Annotated[str, typer.Option(help="Grafana URL", envvar="GRAFANA_URL")],
    token: Annotated[
        str | None, typer.Option(help="Service-account token", envvar="GRAFANA_TOKEN")
    ] = None,
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL as Grafana sees it")] = None,
    alerts: Annotated[bool, typer.Option(help="Also push alert rules")] = True,
) -> None:
    """Create or update the data source, folder, dashboards and alert rules."""
    from dashboards.build import Basemap
    from dashboards.push import GrafanaHttp
    from dashboards.push import push as do_push
    from sensornet.settings import Settings

    settings = Settings()
    grafana = GrafanaHttp(url, token)
    try:
        user, password = settings.influx_reader
        report = do_push(
            grafana,
            influx_url or settings.influx_url,
            settings.influx_db,
            with_alerts=alerts,
            user=user,
            password=password.get_secret_value() if password else None,
            basemap=Basemap(settings.map_tiles_url, settings.map_tiles_attribution),
        )
    finally:
        grafana.close()
    typer.echo(json.dumps(asdict(report)))
