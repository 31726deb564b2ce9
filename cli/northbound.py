"""``sensornet northbound``: the northbound pusher as its own process (systemd, compose,
``make demo``): delivers every active subscription's events until SIGINT/SIGTERM."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import StateDir, run_or_exit, settings_from, setup_logging


def northbound(
    state_dir: StateDir = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Push subscribed events to their receivers (docs/northbound.md) until stopped."""
    from alarms.northbound.pusher import run_pusher
    from wiring.parts import quiet_gc, stop_on_signals

    setup_logging(verbose)
    quiet_gc()  # docs/benchmarks.md, "Northbound push"
    settings = settings_from(state_dir=state_dir)

    async def main() -> None:
        async with stop_on_signals() as stop:
            await run_pusher(settings, stop)

    run_or_exit(main())
