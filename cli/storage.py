"""``sensornet storage apply|backfill``: the storage layout against any InfluxDB (containers,
production), where ``services up`` (local processes) does not run. Output is one JSON
line; a progress bar on stderr counts the steps (apply) or day windows (backfill)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

from cli.common import progress, step

app = typer.Typer(help="InfluxDB retention policies and continuous queries (docs/storage.md).",
                  no_args_is_help=True)  # fmt: skip


@app.command("apply")
def apply() -> None:
    """Create the database, retention policies and continuous queries (idempotent)."""
    from sensornet.settings import Settings
    from wiring.parts import prepare_storage

    settings = Settings()
    with progress("storage layout", unit="steps") as bar:
        asyncio.run(prepare_storage(settings, lambda done, total: step(bar, done, total)))
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
            with progress("backfill", unit="statements (type x resolution x day)") as bar:
                await backfill_aggregates(
                    influx,
                    load_catalogue(),
                    start,
                    end,
                    progress=lambda done, total: step(bar, done, total),
                )

    asyncio.run(main())
    typer.echo(json.dumps({"backfilled": [start.isoformat(), end.isoformat()]}))
