"""``sensornet``: the one front door for every job. Output for machines is JSON.

This package is the top layer: it may import every other one, and none imports it
(``make test`` checks the layers with import-linter; docs/decisions.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from cli.alarms import app as alarms_app
from cli.bench import bench_app
from cli.broker import broker_app
from cli.common import StateDir, console, run_or_exit, settings_from, setup_logging
from cli.dashboards import app as dashboards_app
from cli.registry import keys_app, registry_app
from cli.simulate import simulate
from cli.storage import app as storage_app
from sensornet.errors import SensornetError
from sensornet.settings import Settings

app = typer.Typer(
    help="City sensor network platform: broker, ingest, API, simulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(
    help="Run a real Mosquitto and InfluxDB as local processes.", no_args_is_help=True
)
app.add_typer(services_app, name="services")
app.add_typer(bench_app, name="bench")
app.add_typer(registry_app, name="registry")
app.add_typer(keys_app, name="keys")
app.add_typer(broker_app, name="broker")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(alarms_app, name="alarms")
app.add_typer(storage_app, name="storage")
app.command("simulate")(simulate)


@services_app.command("up")
def services_up(state_dir: StateDir = None, install: bool = True) -> None:
    """Start the broker and InfluxDB (installing the Debian packages if missing)."""
    from wiring.services import ensure_binaries, platform_services

    settings = settings_from(state_dir=state_dir)
    try:
        ensure_binaries(install=install)
        for service in platform_services(settings):
            service.start()
            console.print(
                f"{service.name}: up on {service.host}:{service.port} (log {service.log_file})"
            )
        asyncio.run(_prepare(settings))
    except SensornetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


async def _prepare(settings: Settings) -> None:
    from wiring.parts import prepare_storage

    await prepare_storage(settings)


@services_app.command("down")
def services_down(state_dir: StateDir = None) -> None:
    """Stop the broker and InfluxDB cleanly."""
    from wiring.services import platform_services

    for service in platform_services(settings_from(state_dir=state_dir)):
        service.stop()
        console.print(f"{service.name}: stopped")


@services_app.command("status")
def services_status(state_dir: StateDir = None) -> None:
    """Print one JSON line: each service, its pid, port and readiness."""
    from wiring.services import platform_services

    out = {
        s.name: {"pid": s.pid(), "port": s.port, "ready": s.running() and s.ready()}
        for s in platform_services(settings_from(state_dir=state_dir))
    }
    typer.echo(json.dumps(out))


@app.command()
def ingest(
    client_id: Annotated[str | None, typer.Option(help="Fixed MQTT client id")] = None,
    verbose: bool = False,
) -> None:
    """Run one ingester until SIGINT/SIGTERM (then it writes and acks what is in flight)."""
    from wiring.parts import run_ingester, stop_on_signals, tune_gc_for_throughput

    setup_logging(verbose)
    settings = settings_from(ingest_client_id=client_id)
    tune_gc_for_throughput()

    async def main() -> None:
        async with stop_on_signals() as stop:
            await run_ingester(settings, stop)

    run_or_exit(main())


@app.command()
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Serve the query API (OpenAPI docs at /docs)."""
    import uvicorn

    from api.app import create_app

    settings = settings_from(api_host=host, api_port=port)
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; the API
    # believes it only from SENSORNET_API_TRUSTED_PROXIES (sensornet.client_address)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        proxy_headers=False,
    )


@app.command()
def demo(
    sensors: Annotated[int, typer.Option(help="Simulated fleet size")] = 200,
    state_dir: StateDir = None,
    keep_services: Annotated[bool, typer.Option(help="Leave broker/InfluxDB running")] = False,
) -> None:
    """Everything at once: services, registry, ingester, API and a live district."""
    from wiring.demo import run_demo

    settings = settings_from(state_dir=state_dir)
    try:
        run_demo(settings, sensors, keep_services=keep_services, console=console)
    except SensornetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
