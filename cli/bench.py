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


@bench_app.command("cluster")
def bench_cluster(
    readings: Annotated[int, typer.Option(help="Readings queued per round")] = 20_000,
    sensors: Annotated[int, typer.Option(help="Registered fleet size")] = 1000,
    batch_size: Annotated[
        int, typer.Option(help="Ingester batch (sets its prefetch); the product's default")
    ] = 10_000,
    json_out: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """Scaled shape: 1/2/3 ingesters draining a 3-node RabbitMQ cluster's readings queue
    vs the cluster's bare drain and InfluxDB's write ceiling."""
    from bench.cluster import run_bench

    say = None if json_out else (lambda text: console.print(f"[dim]{text}[/dim]"))
    typer.echo(json.dumps(asyncio.run(run_bench(readings, sensors, batch_size, say))))


@bench_app.command("pipeline")
def bench_pipeline(
    readings: Annotated[int, typer.Option(help="Readings per measured run")] = 100_000,
    rounds: Annotated[int, typer.Option(help="Runs; the best counts")] = 3,
) -> None:
    """CPU per message of the ingest pipeline alone: fast lanes vs general path (native
    messages, LoRaWAN envelopes), and the MQTT frame parsing (no broker, no InfluxDB)."""
    from bench.pipeline import run

    typer.echo(json.dumps(run(readings, rounds)))


@bench_app.command("senml")
def bench_senml(
    readings: Annotated[int, typer.Option(help="Readings per measured run")] = 20_000,
    rounds: Annotated[int, typer.Option(help="Runs; the best counts")] = 3,
) -> None:
    """CPU per reading of the pipeline for SenML JSON and CBOR against the native flat
    object on the fast lane (the ceiling), same readings (no broker, no InfluxDB)."""
    from bench.senml import run

    typer.echo(json.dumps(run(readings, rounds)))


@bench_app.command("http-listener")
def bench_http_listener(
    requests: Annotated[int, typer.Option(help="Requests per server and round")] = 5000,
    body_bytes: Annotated[int, typer.Option(help="Body size (100 readings: ~3000)")] = 3000,
    concurrency: Annotated[int, typer.Option(help="Keep-alive connections")] = 32,
    rounds: Annotated[int, typer.Option(help="Runs per server; the best counts")] = 3,
) -> None:
    """The HTTP input's own server vs uvicorn + Starlette: requests/s, server CPU each."""
    from bench.http_listener import run_listener_bench

    result = asyncio.run(run_listener_bench(requests, body_bytes, concurrency, rounds))
    typer.echo(json.dumps(result))


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


@bench_app.command("cluster-auth")
def cluster_auth(
    connected: Annotated[int, typer.Option(help="Devices registered and connected")] = 10_000,
    register: Annotated[int, typer.Option(help="New devices registered one by one")] = 10_000,
    budget_s: Annotated[float, typer.Option(help="Time limit of the registrations")] = 600.0,
    per_process: Annotated[
        int, typer.Option(help="Connected devices per holding process (fd limit)")
    ] = 5000,
    json_out: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """Scaled shape: device logins on the RabbitMQ cluster answered from the registry
    (reconnect storms, registry queries, registrations one by one with a fleet connected)."""
    from bench.cluster_auth import run_bench

    say = None if json_out else (lambda text: console.print(f"[dim]{text}[/dim]"))
    result = asyncio.run(run_bench(connected, register, budget_s, say, per_process))
    typer.echo(json.dumps(result))


@bench_app.command("broker-coalesce")
def broker_coalesce(
    connected: Annotated[
        list[int] | None, typer.Option(help="Fleet sizes (repeatable); default 1k, 10k, 50k")
    ] = None,
    register: Annotated[int, typer.Option(help="Registrations per size")] = 500,
    concurrent: Annotated[int, typer.Option(help="Registrations asked at once")] = 50,
    window_s: Annotated[float, typer.Option(help="Coalescing window")] = 0.05,
    budget_s: Annotated[float, typer.Option(help="Time limit of each phase")] = 120.0,
) -> None:
    """Mosquitto single node: cost per registration one by one vs coalesced (several at
    once share a reload), at several fleet sizes."""
    from bench.broker_auth import run_coalesced

    sizes = connected or [1000, 10_000, 50_000]
    typer.echo(
        json.dumps(asyncio.run(run_coalesced(sizes, register, concurrent, window_s, budget_s)))
    )


@bench_app.command("broker-reload")
def broker_reload(
    reloads: Annotated[int, typer.Option(help="Reloads measured per point")] = 10,
    per_process: Annotated[
        int, typer.Option(help="Connected devices per holding process (fd limit)")
    ] = 6000,
    scale: Annotated[float, typer.Option(help="Shrink every size (a smoke run)")] = 1.0,
    json_out: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """Mosquitto single node: one reload's cost split into the password file's parse (per
    registered device) and the re-check of connected clients (per connection), fitted
    over measured points up to 50,000 registered; the 50,000-connected figure is the fit's."""
    from bench.broker_reload import run_bench

    say = None if json_out else (lambda text: console.print(f"[dim]{text}[/dim]"))
    typer.echo(json.dumps(asyncio.run(run_bench(reloads, per_process, say, scale))))


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


@bench_app.command("northbound")
def bench_northbound(
    events: Annotated[int, typer.Option(help="Readings in InfluxDB to push")] = 50_000,
    sensors: Annotated[int, typer.Option(help="Sensors they come from")] = 200,
    batch: Annotated[int, typer.Option(help="Events per request (both sides)")] = 1000,
    samples: Annotated[int, typer.Option(help="Alarm latency samples")] = 20,
    rounds: Annotated[
        int, typer.Option(min=1, help="Rounds of bare then push; ratio = their median")
    ] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """Northbound push vs a bare HTTP client to the same receiver; alarm latency."""
    from bench.northbound import run_bench

    say = None if json_out else (lambda text: console.print(f"[dim]{text}[/dim]"))
    typer.echo(json.dumps(asyncio.run(run_bench(events, sensors, batch, samples, say, rounds))))


@bench_app.command("alarms")
def bench_alarms(
    alarms: Annotated[int, typer.Option(help="Alarms raised, one sensor each")] = 40,
    interval: Annotated[float, typer.Option(help="The alarm runner's round (s)")] = 1.0,
    json_out: Annotated[bool, typer.Option("--json", help="Only the JSON line")] = False,
) -> None:
    """End-to-end alarm latency: a reading's arrival at the broker to the notification at
    a receiver, through ingester, InfluxDB, alarm runner and Alertmanager (p50/p99)."""
    from bench.alarms import run_alarm_latency

    say = None if json_out else (lambda text: console.print(f"[dim]{text}[/dim]"))
    typer.echo(json.dumps(asyncio.run(run_alarm_latency(alarms, interval, say))))
