"""``sensornet``: the one front door for every job. Output for machines is JSON.

This package is the top layer: it may import every other one, and none imports it
(``make test`` checks the layers with import-linter; docs/decisions.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.alarms import app as alarms_app
from cli.bench import bench_app
from cli.broker import broker_app
from cli.common import (
    StateDir,
    add_json_flag,
    console,
    emit,
    json_mode,
    progress,
    run_or_exit,
    settings_from,
    setup_logging,
)
from cli.dashboards import app as dashboards_app
from cli.errors import run_with_boundary
from cli.northbound import northbound
from cli.registry import keys_app, registry_app
from cli.simulate import simulate
from cli.simulate_lorawan import simulate_lorawan
from cli.storage import app as storage_app
from sensornet.errors import SensornetError
from sensornet.settings import Settings

app = typer.Typer(
    help="City sensor network platform: broker, ingest, API, simulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(
    help="Run a real Mosquitto, InfluxDB, Alertmanager and Prometheus as local processes.",
    no_args_is_help=True,
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
app.command("simulate-lorawan")(simulate_lorawan)
app.command("northbound")(northbound)


@services_app.command("up")
def services_up(
    state_dir: StateDir = None,
    install: bool = True,
    cluster: Annotated[
        int,
        typer.Option(help="Scaled shape: a RabbitMQ cluster of this many nodes, not Mosquitto"),
    ] = 0,
    tls_cert: Annotated[
        Path | None, typer.Option(help="With --cluster: MQTT over TLS with this chain (PEM)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="With --cluster: its key (PEM)")] = None,
) -> None:
    """Start the broker, InfluxDB, Alertmanager and Prometheus (installing the Debian
    packages if missing)."""
    from wiring.alerting import alerting_services
    from wiring.services import ensure_binaries, platform_services

    settings = settings_from(state_dir=state_dir)
    try:
        if cluster:
            from cli.cluster import cluster_status, cluster_up

            tls = (tls_cert, tls_key or tls_cert) if tls_cert else None
            cluster_up(settings, cluster, tls)
            asyncio.run(_prepare(settings))
            emit(cluster_status(settings), human="")
            return
        ensure_binaries(install=install)
        services = (*platform_services(settings), *alerting_services(settings))
        up: dict[str, object] = {}
        with progress("starting services", total=len(services)) as bar:
            for done, service in enumerate(services):
                bar.update(bar.task_ids[0], description=f"waiting for {service.name}")
                service.start()
                bar.update(bar.task_ids[0], completed=done + 1)
                console.print(
                    f"{service.name}: up on {service.host}:{service.port} (log {service.log_file})"
                )
                up[service.name] = {"host": service.host, "port": service.port,
                                    "log": str(service.log_file)}  # fmt: skip
            bar.update(bar.task_ids[0], description="storage layout")
            asyncio.run(_prepare(settings))
            bar.update(bar.task_ids[0], description="services up")
        emit(up, human="")
    except SensornetError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


async def _prepare(settings: Settings) -> None:
    from wiring.parts import prepare_storage

    await prepare_storage(settings)


@services_app.command("down")
def services_down(state_dir: StateDir = None) -> None:
    """Stop the broker (or the cluster), InfluxDB, Alertmanager and Prometheus cleanly."""
    from cli.cluster import cluster_down, cluster_home_exists
    from wiring.alerting import alerting_services
    from wiring.services import platform_services

    settings = settings_from(state_dir=state_dir)
    if cluster_home_exists(settings):
        cluster_down(settings)
    stopped = []
    for service in reversed((*platform_services(settings), *alerting_services(settings))):
        service.stop()
        console.print(f"{service.name}: stopped")
        stopped.append(service.name)
    emit({"stopped": stopped}, human="")


@services_app.command("status")
def services_status(state_dir: StateDir = None) -> None:
    """Print one JSON line: each service, its pid, port and readiness."""
    from cli.cluster import cluster_home_exists, cluster_status
    from wiring.alerting import alerting_services
    from wiring.services import platform_services

    settings = settings_from(state_dir=state_dir)
    out: dict[str, object] = {
        s.name: {"pid": s.pid(), "port": s.port, "ready": s.running() and s.ready()}
        for s in (*platform_services(settings), *alerting_services(settings))
    }
    if cluster_home_exists(settings):
        out.update(cluster_status(settings))
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
    setup_logging(True, settings)  # uvicorn's loggers too: log_config=None leaves them to us
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; the API
    # believes it only from SENSORNET_API_TRUSTED_PROXIES (sensornet.client_address)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        proxy_headers=False,
    )


@app.command()
def probe(
    url: Annotated[str, typer.Argument(help="e.g. http://127.0.0.1:9464/readyz")],
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to keep asking until it answers 2xx")
    ] = 0.0,
) -> None:
    """Exit 0 when URL answers 2xx, else 1 with its answer: the health check of compose
    and systemd (no curl needed in the image)."""
    import time

    import httpx

    deadline = time.monotonic() + wait
    while True:
        try:
            answer = httpx.get(url, timeout=5.0)
            if answer.is_success:
                if json_mode():
                    body = answer.text.strip()[:500]
                    emit({"url": url, "status": answer.status_code, "body": body})
                else:
                    typer.echo(answer.text.strip()[:500])
                return
            why = f"{answer.status_code} {answer.text.strip()[:300]}"
        except httpx.HTTPError as exc:
            why = f"no answer ({exc})"
        if time.monotonic() >= deadline:
            console.print(f"[red]error:[/red] {escape(url)}: {escape(why)}", soft_wrap=True)
            raise typer.Exit(1)
        time.sleep(1.0)


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
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


def main() -> None:
    """The installed ``sensornet`` command: the app inside the CLI's error boundary."""
    run_with_boundary(add_json_flag(app), console, sys.argv)


if __name__ == "__main__":
    main()
