"""``sensornet storage apply|backfill``: the storage layout against any InfluxDB (containers,
production), where ``services up`` (local processes) does not run."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

app = typer.Typer(help="InfluxDB retention policies and continuous queries (docs/storage.md).",
                  no_args_is_help=True)  # fmt: skip


@app.command("apply")
def apply() -> None:
    """Create the database, retention policies and continuous queries (idempotent)."""
    from sensornet.settings import Settings
    from wiring.parts import prepare_storage

    settings = Settings()
    asyncio.run(prepare_storage(settings))
    typer.echo(json.dumps({"database": settings.influx_db, "applied": True}))


@app.command("backfill")
def backfill(
    start: Annotated[datetime, typer.Option(help="RFC 3339 with offset")],
    end: Annotated[datetime, typer.Option(help="RFC 3339 with offset")],
) -> None:
    """Compute the 1m/1h aggregates of a past window (after an import or a long outage)."""
    from sensornet.catalogue import load_catalogue
    from sensornet.influx import influx_client
    from sensornet.settings import Settings
    from sensornet.storage_layout import backfill_aggregates

    async def main() -> None:
        async with influx_client(Settings()) as influx:
            await backfill_aggregates(influx, load_catalogue(), start, end)

    asyncio.run(main())
    typer.echo(json.dumps({"backfilled": [start.isoformat(), end.isoformat()]}))
