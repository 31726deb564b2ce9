"""``sensornet demo``: the whole platform with a live simulated district, on one machine."""

from __future__ import annotations

import asyncio

from rich.console import Console

from sensornet.alarms.runner import run_alarms
from sensornet.runtime import (
    default_fleet,
    prepare_storage,
    register_fleet,
    run_api,
    run_ingester,
    run_simulator,
    stop_on_signals,
)
from sensornet.services import ensure_binaries, platform_services
from sensornet.settings import Settings


def run_demo(settings: Settings, sensors: int, *, keep_services: bool, console: Console) -> None:
    ensure_binaries()
    services = platform_services(settings)
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
    console.print(f"[green]✓[/green] registry: {len(fleet)} simulated sensors across the district")
    base = f"http://{settings.api_host}:{settings.api_port}"
    sample = fleet[0].id
    async with stop_on_signals() as stop:
        tasks = [
            asyncio.create_task(run_ingester(settings, stop), name="ingester"),
            asyncio.create_task(run_api(settings, stop), name="api"),
            asyncio.create_task(run_simulator(settings, fleet, stop), name="simulator"),
            asyncio.create_task(run_alarms(settings, stop), name="alarms"),
        ]
        console.print(
            f"\n[bold]Sensornet demo running[/bold] — Ctrl-C stops everything\n"
            f"  API docs      {base}/docs\n"
            f"  health        curl {base}/health\n"
            f"  latest        curl {base}/sensors/{sample}/latest\n"
            f"  all sensors   curl {base}/latest\n"
            f"  alarms        curl {base}/alarms\n"
            f"  readings      curl '{base}/sensors/{sample}/readings?start=2026-01-01T00:00:00Z'\n"
        )
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                console.print(f"[red]{task.get_name()} failed:[/red] {result!r}")
                raise result
