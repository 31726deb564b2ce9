"""``sensornet demo``: the whole platform with a live simulated district, on one machine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rich.console import Console

from alarms.northbound.pusher import run_pusher
from alarms.runner import run_alarms
from sensornet.registry.keys import create_key
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.alerting import alerting_services
from wiring.parts import (
    default_fleet,
    issue_fleet_credentials,
    prepare_storage,
    register_fleet,
    run_api,
    run_ingester,
    run_simulator,
    stop_on_signals,
)
from wiring.services import ensure_binaries, platform_services

DEMO_SPEED = 60.0  # a simulated day in 24 minutes: daily cycles show within the demo


def run_demo(settings: Settings, sensors: int, *, keep_services: bool, console: Console) -> None:
    ensure_binaries()
    services = (*platform_services(settings), *alerting_services(settings))
    started = [s for s in services if not s.running()]
    for service in services:
        service.start()
        console.print(f"[green]✓[/green] {service.name} on {service.host}:{service.port}")
    try:
        asyncio.run(_run(settings, sensors, console))
    finally:
        if not keep_services:
            for service in reversed(started):
                service.stop()
            console.print("services stopped")


async def _run(settings: Settings, sensors: int, console: Console) -> None:
    await prepare_storage(settings)
    fleet = default_fleet(sensors)
    await register_fleet(settings, fleet)
    credentials = await issue_fleet_credentials(settings, fleet, "demo")
    async with open_registry(settings.registry_database_url) as registry:
        _, key = await create_key(registry, "engineer", "demo", "demo")
    console.print(
        f"[green]✓[/green] registry: {len(fleet)} simulated sensors across the district, "
        "each with its own MQTT credentials"
    )
    base = f"http://{settings.api_host}:{settings.api_port}"
    auth = f"-H 'Authorization: Bearer {key}'"
    sample = fleet[0].id
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    async with stop_on_signals() as stop:
        tasks = [
            asyncio.create_task(run_ingester(settings, stop), name="ingester"),
            asyncio.create_task(run_api(settings, stop), name="api"),
            asyncio.create_task(
                run_simulator(settings, fleet, stop, speed=DEMO_SPEED, credentials=credentials),
                name="simulator",
            ),
            asyncio.create_task(run_alarms(settings, stop), name="alarms"),
            asyncio.create_task(run_pusher(settings, stop), name="northbound"),
        ]
        console.print(
            f"\n[bold]Sensornet demo running[/bold] — Ctrl-C stops everything\n"
            f"  API docs      {base}/docs  (engineer key: {key})\n"
            f"  health        curl {base}/health\n"
            f"  latest        curl {auth} {base}/sensors/{sample}/latest\n"
            f"  one sensor    curl {auth} {base}/sensors/{sample}/view\n"
            f"  accounting    curl {auth} {base}/devices/{sample}/accounting\n"
            f"  all sensors   curl {auth} {base}/latest\n"
            f"  alarms        curl {auth} {base}/alarms\n"
            f"  maintenance   curl {auth} {base}/maintenance\n"
            f"  Alertmanager  {settings.alertmanager_url}  (routing: docs/alerting.md)\n"
            f"  Prometheus    http://127.0.0.1:{settings.prometheus_port}/alerts\n"
            f"  northbound    curl {auth} {base}/northbound/subscriptions  (register one "
            "with an admin key: docs/northbound.md)\n"
            f"  readings      curl {auth} '{base}/sensors/{sample}/readings?start={today}'\n"
            f"  the city runs {DEMO_SPEED:.0f}x fast: a simulated day every "
            f"{24 * 60 / DEMO_SPEED:.0f} minutes, with weather episodes\n",
            soft_wrap=True,  # commands must stay copyable
        )
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                console.print(f"[red]{task.get_name()} failed:[/red] {result!r}")
                raise result
