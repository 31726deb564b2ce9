"""``sensornet simulate``: the simulated district in live, load or backfill mode, with
optional fault injection, a ground-truth file and a final account against the platform."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import console, run_or_exit, settings_from, setup_logging, waiting

REGISTRY_SETTLE_S = 2.5  # ingest's DeviceCache TTL (2 s) plus a margin


class Mode(StrEnum):
    live = "live"
    load = "load"
    backfill = "backfill"


def _credentials(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise typer.BadParameter("credentials file must be a JSON object {device id: password}")
    return {str(k): str(v) for k, v in data.items()}


def print_report(report: Any, limit: int = 30) -> None:
    table = Table(title="simulator account (per device with faults or discrepancies)")
    cols = ("device", "sent", "expected", "stored", "rejected", "unexpected", "lost on device")
    for col in (*cols, "missing"):
        table.add_column(col, justify="right" if col != "device" else "left")
    shown = [
        a
        for a in report.devices
        if a.missing
        or a.unexpected
        or a.rejected
        or a.lost_on_device
        or a.stored != a.expected_stored
    ]
    for a in shown[:limit]:
        table.add_row(
            a.device,
            *(
                str(v)
                for v in (
                    a.sent,
                    a.expected_stored,
                    a.stored,
                    a.rejected,
                    a.unexpected,
                    a.lost_on_device,
                )
            ),
            f"[red]{a.missing}[/red]" if a.missing else "0",
        )
    if len(shown) > limit:
        table.add_row(f"… {len(shown) - limit} more", "", "", "", "", "", "", "")
    console.print(table)
    reasons = Table(title="refusals: injected fault vs platform reason")
    for col in ("reason", "injected", "platform"):
        reasons.add_column(col)
    for reason, counts in sorted(report.by_reason.items()):
        reasons.add_row(reason, str(counts["injected"]), str(counts["platform"]))
    console.print(reasons)
    verdict = "[green]exact[/green]" if report.exact else "[red]MISMATCH[/red]"
    console.print(f"totals {report.totals} -> {verdict}")


def _checked(test: Callable[[float], bool], rule: str) -> Callable[[Any], Any]:
    """A Typer callback refusing a value that breaks ``rule`` (None passes: unset)."""

    def check(value: Any) -> Any:
        if value is not None and not test(value):
            raise typer.BadParameter(f"must be {rule}, got {value}")
        return value

    return check


positive = _checked(lambda v: v > 0, "greater than 0")
not_negative = _checked(lambda v: v >= 0, "0 or more")
at_least_one = _checked(lambda v: v >= 1, "at least 1")
share = _checked(lambda v: 0 <= v <= 1, "a share between 0 and 1")


def simulate(
    mode: Annotated[Mode, typer.Option(help="live, load or backfill")] = Mode.live,
    sensors: Annotated[
        int, typer.Option(callback=at_least_one, help="Fleet size (generated fleet)")
    ] = 100,
    seed: int = 151,
    from_registry: Annotated[bool, typer.Option(help="Simulate the registry's sensors")] = False,
    register: Annotated[bool, typer.Option(help="Upsert the fleet into the registry")] = True,
    speed: Annotated[
        float,
        typer.Option(callback=positive, help="live: city clock speed-up (60 = a day in 24 min)"),
    ] = 1.0,
    interval_scale: Annotated[
        float, typer.Option(callback=positive, help="live: multiply every interval")
    ] = 1.0,
    duration: Annotated[
        float | None, typer.Option(callback=positive, help="Seconds to run (load default 30)")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(callback=at_least_one, help="live: reports per sensor, then stop")
    ] = None,
    rate: Annotated[
        float, typer.Option(callback=not_negative, help="load: target readings/s (0 = max)")
    ] = 0.0,
    connections: Annotated[
        int, typer.Option(callback=at_least_one, help="Shared-identity MQTT connections")
    ] = 8,
    processes: Annotated[
        int, typer.Option(callback=at_least_one, help="load: worker processes")
    ] = 2,
    max_in_flight: Annotated[
        int, typer.Option(callback=at_least_one, help="load: unacked QoS 1 per connection")
    ] = 100,
    days: Annotated[float, typer.Option(callback=positive, help="backfill: days of history")] = 7.0,
    faults: Annotated[
        float, typer.Option(callback=share, help="Share of readings given a fault")
    ] = 0.0,
    fault_kinds: Annotated[str | None, typer.Option(help="Comma list (default: all)")] = None,
    ground_truth: Annotated[Path | None, typer.Option(help="Ground-truth JSONL path")] = None,
    credentials: Annotated[
        Path | None, typer.Option(help="JSON {device id: password}: per-device connections")
    ] = None,
    http_share: Annotated[
        float,
        typer.Option(
            callback=share,
            help="live: share of devices and gateways that push over the ingester's HTTP "
            "input (SENSORNET_INGEST_INPUTS with http) with their own credentials",
        ),
    ] = 0.0,
    report: Annotated[bool, typer.Option(help="End with an account against the platform")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line on stdout")] = False,
    verbose: bool = False,
) -> None:
    """Run the simulated district (live, load or backfill), optionally with faults and a
    final report of sent vs stored vs refused vs missing."""
    from gateway_sim.faults import FAULT_KINDS, FaultPlan

    setup_logging(verbose)
    settings = settings_from()
    kinds = tuple(k.strip() for k in fault_kinds.split(",")) if fault_kinds else FAULT_KINDS
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        raise typer.BadParameter(f"unknown fault kind(s) {sorted(unknown)}; known {FAULT_KINDS}")
    plan = FaultPlan(rate=faults, kinds=kinds, seed=seed)
    if http_share > 0 and mode is not Mode.live:
        raise typer.BadParameter("--http-share is for the live mode (load and backfill speak "
                                 "MQTT and InfluxDB only)")  # fmt: skip
    if http_share > 0 and "http" not in settings.ingest_inputs:
        raise typer.BadParameter("--http-share needs the ingester's HTTP input: set "
                                 "SENSORNET_INGEST_INPUTS=mqtt,http (and the same "
                                 "SENSORNET_INGEST_HTTP_HOST/_PORT as the ingester)")  # fmt: skip
    truth_path = ground_truth or (settings.state_dir / "ground-truth.jsonl")
    options = {
        "mode": mode,
        "sensors": sensors,
        "seed": seed,
        "from_registry": from_registry,
        "register": register,
        "speed": speed,
        "interval_scale": interval_scale,
        "duration": duration,
        "rounds": rounds,
        "rate": rate,
        "connections": connections,
        "processes": processes,
        "max_in_flight": max_in_flight,
        "days": days,
        "plan": plan,
        "truth_path": truth_path,
        "credentials": _credentials(credentials),
        "http_share": http_share,
        "report": report,
        "as_json": as_json,
    }
    run_or_exit(_simulate(settings, options))


async def _simulate(settings: Any, o: dict[str, Any]) -> None:
    from gateway_sim.fleet import fleet_from_registry
    from wiring.parts import default_fleet, register_fleet

    if o["from_registry"]:
        fleet = await fleet_from_registry(settings.registry_database_url)
    else:
        fleet = default_fleet(o["sensors"], o["seed"])
        if o["register"] and await register_fleet(settings, fleet):
            # ingesters reload the registry every 2 s (DeviceCache): readings sent before
            # that would be refused as unknown_sensor
            console.print("registered new sensors; waiting for the ingesters' registry cache")
            await asyncio.sleep(REGISTRY_SETTLE_S)
    console.print(f"fleet: {len(fleet)} sensors, mode {o['mode'].value}")
    start_ns = time.time_ns() - 1_000_000_000
    if o["mode"] in (Mode.live, Mode.load):
        from wiring.parts import fleet_login, issue_fleet_credentials

        if not o["credentials"] and settings.mqtt_fleet_password is None:
            if o["from_registry"]:
                # a registry's devices are not ours to give new passwords
                settings.fleet_password()  # raises: say what to set
            o["credentials"] = await issue_fleet_credentials(settings, fleet, "simulator")
            console.print("each simulated device got its own MQTT credentials")
        await _http_credentials(settings, fleet, o)

        # devices without their own credentials share the fleet identity (test-only),
        # which exists in the broker only while this runs
        async with fleet_login(settings, fleet, o["credentials"]) as o["fleet_password"]:
            if o["mode"] is Mode.live:
                truth = await _live(settings, fleet, o)
            else:
                truth = await asyncio.to_thread(_load, settings, fleet, o)
    else:
        truth, start_ns = await _backfill(settings, fleet, o)
    summary: dict[str, Any] = {
        "mode": o["mode"].value,
        "sensors": len(fleet),
        "sent": sum(truth.sent.values()),
        "faults": sum(truth.faults.values()),
    }
    if o.get("load_stats"):
        summary.update(o["load_stats"])
    if o.get("http_answers"):
        summary["http_answers"] = o["http_answers"]
    if o["report"]:
        from gateway_sim.report import account
        from sensornet.catalogue import load_catalogue
        from sensornet.influx import influx_client

        async with influx_client(settings) as influx:
            with waiting("waiting for an ingester") as say:
                if not await ingester_reporting(influx, settings.ingest_report_interval_s):
                    console.print(
                        "[red]error:[/red] no ingester has reported to InfluxDB lately: nothing "
                        "consumes the readings (start one: `sensornet ingest`)",
                        soft_wrap=True,
                    )
                    raise typer.Exit(1)
                say("waiting for the account to settle (stored vs sent, up to 120 s)")
                result = await account(
                    influx,
                    truth,
                    {d.id: d.type for d in fleet},
                    load_catalogue(),
                    start_ns,
                    timeout_s=120,
                )
        print_report(result)
        summary["report"] = result.as_json()
    if o["as_json"]:
        typer.echo(json.dumps(summary))
    else:
        console.print(summary)
    if o["report"] and not result.exact:
        raise typer.Exit(1)


async def _http_credentials(settings: Any, fleet: list[Any], o: dict[str, Any]) -> None:
    """Devices that push over HTTP log in with their own password (the input knows no
    fleet identity): those without one get one through the registry, for a fleet the
    simulator made; a registry's devices need theirs in --credentials."""
    from gateway_sim.publisher import http_push, http_senders
    from wiring.parts import issue_fleet_credentials

    push = http_push(settings, o["http_share"])
    o["http_push"] = push
    community = push is not None and push.integration is not None
    lacking = [s for s in http_senders(fleet, push, community) if s not in (o["credentials"] or {})]
    if not lacking:
        return
    if o["from_registry"]:
        raise typer.BadParameter(f"{len(lacking)} device(s) chosen to push over HTTP have no "
                                 f"password in --credentials (e.g. {lacking[0]})")  # fmt: skip
    issued = await issue_fleet_credentials(settings, fleet, "simulator", only=lacking)
    o["credentials"] = {**(o["credentials"] or {}), **issued}
    # no wait: the HTTP input reads the registry when a device it does not know logs in
    console.print(f"{len(lacking)} device(s) pushing over HTTP got their own credentials")


async def ingester_reporting(influx: Any, interval_s: float) -> bool:
    """Some ingester wrote its figures within two report intervals (ingesters report
    when they start, then every interval); one that is starting gets one interval."""
    window_s = max(20.0, 2 * interval_s)
    deadline = time.monotonic() + interval_s
    while True:
        since_ns = time.time_ns() - int(window_s * 1e9)
        found = await influx.query(
            'SELECT last("stored") FROM "platform_ingest" WHERE time > $since',
            {"since": since_ns},
        )
        if found or time.monotonic() > deadline:
            return bool(found)
        console.print("no ingester has reported yet; waiting for one", soft_wrap=True)
        await asyncio.sleep(2.0)


async def _live(settings: Any, fleet: list[Any], o: dict[str, Any]) -> Any:
    from gateway_sim.faults import GroundTruth
    from gateway_sim.publisher import LivePublisher
    from sensornet.catalogue import load_catalogue
    from sensornet.mqtt_tls import MqttTls
    from wiring.parts import stop_on_signals

    truth = GroundTruth(o["truth_path"] if o["plan"].rate > 0 else None)
    publisher = LivePublisher(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        endpoints=settings.mqtt_endpoint_list(),
        mqtt311=settings.mqtt_protocol == "3.1.1",
        username=settings.mqtt_fleet_user,
        password=o["fleet_password"],
        topic_prefix=settings.topic_prefix,
        fleet=fleet,
        catalogue=load_catalogue(),
        interval_scale=o["interval_scale"],
        seed=o["seed"],
        speed=o["speed"],
        credentials=o["credentials"],
        connections=o["connections"],
        faults=o["plan"],
        ground_truth=truth,
        tls=MqttTls.from_settings(settings),
        http_push=o["http_push"],
    )
    async with stop_on_signals() as stop:
        if o["duration"] is not None:
            asyncio.get_running_loop().call_later(o["duration"], stop.set)
        await publisher.run(stop, max_rounds=o["rounds"])
    if publisher.stats.http_answers:  # by status, retries included (0: no answer)
        o["http_answers"] = {str(k): n for k, n in sorted(publisher.stats.http_answers.items())}
    return publisher.truth


def _load(settings: Any, fleet: list[Any], o: dict[str, Any]) -> Any:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from gateway_sim.load import LoadPlan, merge_truth, run_load
    from sensornet.mqtt_tls import MqttTls

    plan = LoadPlan(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username=settings.mqtt_fleet_user,
        password=o["fleet_password"],
        prefix=settings.topic_prefix,
        rate=o["rate"],
        duration_s=o["duration"] or 30.0,
        connections=o["connections"],
        max_in_flight=o["max_in_flight"],
        seed=o["seed"],
        credentials=o["credentials"],
        faults=o["plan"],
        truth_path=o["truth_path"] if o["plan"].rate > 0 else None,
        tls=MqttTls.from_settings(settings),
    )
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]load[/bold]"),
        TextColumn("connected {task.fields[conn]}"),
        TextColumn("sent {task.fields[sent]:,}"),
        TextColumn("acked {task.fields[acked]:,}"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("load", sent=0, acked=0, rate=0.0, conn=0)

        def update(sent: int, acked: int, conn: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, sent=sent, acked=acked, conn=conn, rate=acked / elapsed)

        results, wall = run_load(plan, fleet, o["processes"], update)
    acked = sum(r.acked for r in results)
    busy = max((r.elapsed_s for r in results), default=wall)
    o["load_stats"] = {
        "acked": acked,
        "readings_per_s": round(acked / busy, 1) if busy else 0.0,
        "connections": sum(r.connected for r in results),
        "processes": len(results),
        "wall_s": round(wall, 2),
    }
    return merge_truth(results)


async def _backfill(settings: Any, fleet: list[Any], o: dict[str, Any]) -> tuple[Any, int]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from gateway_sim.backfill import backfill
    from gateway_sim.faults import GroundTruth
    from gateway_sim.signals import City
    from gateway_sim.weather import Weather
    from sensornet.catalogue import load_catalogue
    from sensornet.district import load_district
    from sensornet.influx import influx_client
    from wiring.parts import prepare_storage

    await prepare_storage(settings)
    district = load_district()
    end = time.time()
    start = end - o["days"] * 86_400
    centre = ((district.bbox[1] + district.bbox[3]) / 2, (district.bbox[0] + district.bbox[2]) / 2)
    weather = Weather.generate(o["seed"], start, end, centre)
    city = City(fleet, load_catalogue(), district, seed=o["seed"], weather=weather)
    with Progress(
        TextColumn("[bold]backfill[/bold]"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} points"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("backfill", total=1)
        async with influx_client(settings) as influx:
            written = await backfill(
                influx,
                city,
                load_catalogue(),
                o["days"],
                end,
                lambda done, total: progress.update(task, completed=done, total=total),
            )
    truth = GroundTruth()
    truth.sent.update(written)
    truth.expected_stored.update(written)
    return truth, int(start * 1e9)
