"""``sensornet bench ...``: each benchmark prints one JSON line with its figures. The
benchmarks themselves are in the ``bench`` package (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

from bench.simulate import bench_simulate
from sensornet.errors import ConfigError

bench_app = typer.Typer(help="Benchmarks; each prints one JSON line.", no_args_is_help=True)
bench_app.command("simulate")(bench_simulate)
console = Console(stderr=True)


@bench_app.command("ingest")
def bench_ingest(
    readings: Annotated[int, typer.Option(help="Readings to queue and drain")] = 100_000,
    pack: Annotated[int, typer.Option(help="Readings per message (gateway packs when > 1)")] = 1,
    sensors: Annotated[int, typer.Option(help="Registered fleet size")] = 1000,
    outage: Annotated[
        bool, typer.Option(help="InfluxDB down while they arrive: spool, then replay")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
    way_in: Annotated[
        str,
        typer.Option(
            "--input",
            help="mqtt: drain a queued session; http: push over the HTTP input, each "
            "request answered once durable; lorawan: drain network-server envelopes queued "
            "at the NS's broker",
        ),
    ] = "mqtt",
    batch: Annotated[int, typer.Option(help="HTTP input: readings per request")] = 100,
    network: Annotated[
        str, typer.Option(help="LoRaWAN input: chirpstack or tts envelopes")
    ] = "chirpstack",
    raw: Annotated[
        bool, typer.Option(help="LoRaWAN input: raw bytes by the type's codec, not decoded")
    ] = False,
    concurrency: Annotated[int, typer.Option(help="HTTP input: requests at once")] = 32,
) -> None:
    """The production ingester's rate vs the InfluxDB ceiling of the same run."""
    say = None if json_out else (lambda text: console.print(f"[dim]{text}[/dim]"))
    if way_in == "lorawan":
        from bench.ingest_lorawan import run_lorawan_bench

        if network not in ("chirpstack", "tts"):
            raise typer.BadParameter("chirpstack or tts", param_hint="--network")
        lorawan = run_lorawan_bench(readings, sensors, network, raw, say)  # type: ignore[arg-type]
        typer.echo(json.dumps(asyncio.run(lorawan)))
        return
    if way_in == "http":
        from bench.ingest_http import run_http_bench

        result = asyncio.run(run_http_bench(readings, batch, sensors, concurrency, say))
        typer.echo(json.dumps(result))
        return
    if way_in != "mqtt":
        raise typer.BadParameter(f"--input {way_in!r}: mqtt or http")
    from bench.ingest import run_bench

    result = asyncio.run(run_bench(readings, pack, sensors, outage, say))
    typer.echo(json.dumps(result))


@bench_app.command("pipeline")
def bench_pipeline(
    readings: Annotated[int, typer.Option(help="Readings per measured run")] = 100_000,
    rounds: Annotated[int, typer.Option(help="Runs; the best counts")] = 3,
) -> None:
    """CPU per message of the ingest pipeline alone: fast lane vs general path, and the
    MQTT frame parsing (no broker, no InfluxDB)."""
    from bench.pipeline import run

    typer.echo(json.dumps(run(readings, rounds)))


@bench_app.command("query")
def query(
    sensors: Annotated[int, typer.Option(help="Simulated sensors")] = 2000,
    days: Annotated[float, typer.Option(help="Days of history at each type's interval")] = 7.0,
    rounds: Annotated[int, typer.Option(help="Measured requests per endpoint")] = 40,
    endpoint: Annotated[
        list[str] | None, typer.Option(help="Only these cases (repeatable), e.g. series_7d_1h")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """Load history into a private InfluxDB, then time every query endpoint through the
    API, the same InfluxQL straight to InfluxDB and (one-query endpoints) through a bare
    forwarder, the floor; judge each against the query-overhead target (docs/benchmarks.md)."""
    from bench.query import run_bench

    def log(line: str) -> None:
        if not as_json:
            console.print(line)

    try:
        result = asyncio.run(run_bench(sensors, days, rounds, log, endpoint or []))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--endpoint") from exc
    typer.echo(json.dumps(result))


@bench_app.command("broker-auth")
def broker_auth(
    connected: Annotated[
        int, typer.Option(help="Devices known to the broker and connected")
    ] = 10_000,
    register: Annotated[int, typer.Option(help="New devices registered per phase")] = 10_000,
    sample_101: Annotated[
        int, typer.Option(help="Devices registered one by one with 101-iteration hashes")
    ] = 100,
    budget_s: Annotated[float, typer.Option(help="Time limit of each phase")] = 600.0,
) -> None:
    """Registering devices with many connected: the password file (the product's delivery)
    vs Mosquitto's dynamic-security plugin, one by one and in bulk."""
    from bench.broker_auth import run_bench

    typer.echo(json.dumps(asyncio.run(run_bench(connected, register, sample_101, budget_s))))
