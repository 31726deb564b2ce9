"""``sensornet alarms ...``: the alarm runner as its own process (systemd, compose), the
maintenance windows a field engineer sets from a shell, and a check of the routing file.
Output of the maintenance and check commands is one JSON line."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.registry import actor, run
from sensornet.registry.maintenance import (
    add_window,
    current_windows,
    end_window,
)

app = typer.Typer(help="Threshold alarms (rules: sensornet/data/alarm_rules.yaml).",
                  no_args_is_help=True)  # fmt: skip
maintenance_app = typer.Typer(
    help="Maintenance windows: no notifications for a sensor or subdistrict meanwhile.",
    no_args_is_help=True,
)
app.add_typer(maintenance_app, name="maintenance")

Url = Annotated[str | None, typer.Option(help="Registry URL (SENSORNET_REGISTRY_URL)")]


@app.command("run")
def run_runner() -> None:
    """Evaluate the rules continuously, notify through Alertmanager (and serve the
    WeCom/DingTalk relay when the routing file has robots) until SIGINT/SIGTERM."""
    from alarms.runner import run_alarms
    from cli.common import setup_logging
    from sensornet.settings import Settings
    from wiring.parts import stop_on_signals

    setup_logging(False)  # text, or JSON with --json / SENSORNET_LOG_FORMAT=json

    async def main() -> None:
        async with stop_on_signals() as stop:
            await run_alarms(Settings(), stop)

    asyncio.run(main())


@app.command("check-routing")
def check_routing(
    path: Annotated[
        Path | None, typer.Argument(help="default: SENSORNET_ALERT_ROUTING_FILE")
    ] = None,
) -> None:
    """Validate a routing file and the Alertmanager configuration generated from it
    (with amtool check-config), without starting anything."""
    import tempfile

    import yaml

    from alarms.routing import Delivery, alertmanager_config, load_routing
    from sensornet.errors import SensornetError
    from sensornet.settings import Settings
    from wiring.alerting import check_tool

    settings = Settings()
    try:
        routing = load_routing(path or settings.alert_routing_file)
        delivery = Delivery("http://127.0.0.1:9097", settings.alert_smtp_smarthost,
                            settings.alert_smtp_from)  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "alertmanager.yml"
            out.write_text(yaml.safe_dump(alertmanager_config(routing, delivery)))
            check_tool("amtool", "check-config", str(out))
    except SensornetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    missing = [s for s in routing.secrets_needed() if s not in settings.alert_secret_names()]
    typer.echo(json.dumps({"ok": True, "receivers": sorted(routing.receivers),
                           "routes": len(routing.routes), "missing_secrets": missing}))  # fmt: skip


def _out(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


@maintenance_app.command("start")
def start(
    sensor: Annotated[str | None, typer.Option(help="A sensor id")] = None,
    subdistrict: Annotated[str | None, typer.Option(help="A whole subdistrict")] = None,
    hours: Annotated[float | None, typer.Option(help="From now, for this long")] = None,
    until: Annotated[datetime | None, typer.Option(help="End (RFC 3339, UTC if no offset)")] = None,
    starts: Annotated[datetime | None, typer.Option(help="Start (default now)")] = None,
    reason: str = "",
    url: Url = None,
) -> None:
    """Put a sensor or a subdistrict into maintenance (give --hours or --until)."""
    from sensornet.district import load_district

    def utc(at: datetime | None) -> datetime | None:
        return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)

    if (hours is None) == (until is None):
        typer.echo("error: give either --hours or --until", err=True)
        raise typer.Exit(2)
    begin = utc(starts) or datetime.now(UTC)
    end = utc(until) or begin + timedelta(hours=hours or 0)
    window = run(
        url,
        lambda engine: add_window(
            engine,
            sensor_id=sensor,
            subdistrict=subdistrict,
            starts_at=begin,
            ends_at=end,
            reason=reason,
            by=actor(),
            known_subdistricts=frozenset(load_district().subdistricts),
        ),
    )
    _out(asdict(window))


@maintenance_app.command("list")
def list_windows(url: Url = None) -> None:
    """Windows running or to come."""
    _out([asdict(w) for w in run(url, current_windows)])


@maintenance_app.command("end")
def end(window_id: int, url: Url = None) -> None:
    """End a window now: notifications resume within one runner round."""
    _out(asdict(run(url, lambda engine: end_window(engine, window_id))))


@app.command("write-config")
def write_config(
    out: Annotated[Path, typer.Option(help="Directory the services read (same path)")],
    target: Annotated[
        list[str] | None,
        typer.Option(help="job=host:port scraped by Prometheus (repeat); default: local ports"),
    ] = None,
    alertmanager: Annotated[
        str | None, typer.Option(help="host:port Prometheus sends alerts to")
    ] = None,
    secrets_owner: Annotated[
        int | None, typer.Option(help="uid that owns the 0600 secret files (Alertmanager's)")
    ] = None,
) -> None:
    """Write Alertmanager's and Prometheus's configuration for services run elsewhere
    (deploy/compose.yaml, deploy/systemd): one JSON line with the two files."""
    from sensornet.errors import SensornetError
    from sensornet.settings import Settings
    from wiring.alerting import scrape_targets, write_alerting_files

    settings = Settings()
    targets: dict[str, list[str]] = {}
    for t in target or []:
        job, _, address = t.partition("=")
        if not job or not address:
            typer.echo(f"error: --target {t!r}: give job=host:port", err=True)
            raise typer.Exit(2)
        targets.setdefault(job, []).append(address)
    am = alertmanager or f"127.0.0.1:{settings.alertmanager_port}"
    try:
        files = write_alerting_files(
            settings, out, targets=targets or scrape_targets(settings, settings.alertmanager_port),
            alertmanager=am, secrets_owner=secrets_owner,
        )  # fmt: skip
    except SensornetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _out({"alertmanager": str(files[0]), "prometheus": str(files[1])})
