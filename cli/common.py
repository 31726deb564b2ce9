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
from sensornet.settings import Settings

console = Console(stderr=True)

StateDir = Annotated[Path | None, typer.Option(help="State directory (SENSORNET_STATE_DIR)")]


def settings_from(**overrides: Any) -> Settings:
    """Settings from env/.env with CLI flags (non-None) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for chatty in ("httpx", "gmqtt"):  # one line per request/packet is noise, not a log
        logging.getLogger(chatty).setLevel(logging.WARNING)


def run_or_exit(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except SensornetError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc
