"""What every command shares: settings from env/.env with flags on top, logging, and
turning a platform error into a readable message and exit code 1."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from sensornet.errors import SensornetError
from sensornet.logs import configure_logging
from sensornet.settings import Settings

console = Console(stderr=True)

StateDir = Annotated[Path | None, typer.Option(help="State directory (SENSORNET_STATE_DIR)")]


def settings_from(**overrides: Any) -> Settings:
    """Settings from env/.env with CLI flags (non-None) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def setup_logging(verbose: bool, settings: Settings | None = None) -> None:
    """Text or JSON (``SENSORNET_LOG_FORMAT``), INFO with ``--verbose`` else WARNING."""
    fmt = (settings or Settings()).log_format
    configure_logging(logging.INFO if verbose else logging.WARNING, fmt)


def run_or_exit(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except SensornetError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc
