"""``sensornet bench …``: benchmarks, each printing one JSON line."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Benchmarks; each prints one JSON line.", no_args_is_help=True)
console = Console(stderr=True)


@app.command("query")
def query(
    sensors: Annotated[int, typer.Option(help="Simulated sensors")] = 2000,
    days: Annotated[float, typer.Option(help="Days of history at each type's interval")] = 7.0,
    rounds: Annotated[int, typer.Option(help="Measured requests per endpoint")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """Load history into a private InfluxDB, then time every query endpoint through the
    API and the same InfluxQL straight to InfluxDB (docs/benchmarks.md)."""
    from sensornet.bench_query import run_bench

    def log(line: str) -> None:
        if not as_json:
            console.print(line)

    result = asyncio.run(run_bench(sensors, days, rounds, log))
    typer.echo(json.dumps(result))
