"""``sensornet alarms run``: the alarm runner as its own process (systemd, compose)."""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(help="Threshold alarms (rules: sensornet/data/alarm_rules.yaml).",
                  no_args_is_help=True)  # fmt: skip


@app.command("run")
def run() -> None:
    """Evaluate the rules continuously until SIGINT/SIGTERM."""
    from alarms.runner import run_alarms
    from sensornet.settings import Settings
    from wiring.parts import stop_on_signals

    async def main() -> None:
        async with stop_on_signals() as stop:
            await run_alarms(Settings(), stop)

    asyncio.run(main())
