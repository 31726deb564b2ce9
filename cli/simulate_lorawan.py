"""``sensornet simulate-lorawan``: the registry's LoRaWAN sensors report through a
simulated network server (ChirpStack v4 or The Things Stack v3 JSON on its MQTT broker),
then the platform's store is checked against what was sent (docs/inputs/lorawan.md), or
with ``--report`` accounted exactly as ``simulate --report`` accounts native devices."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import console, run_or_exit, waiting


def simulate_lorawan(
    rounds: Annotated[int, typer.Option(help="Uplinks per sensor")] = 3,
    interval: Annotated[float, typer.Option(help="Seconds between rounds")] = 5.0,
    network: Annotated[str, typer.Option(help="chirpstack or tts")] = "chirpstack",
    raw: Annotated[bool, typer.Option(help="Raw bytes by the type's codec, not decoded")] = False,
    host: Annotated[str, typer.Option(help="The network server's broker")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Its port")] = 1883,
    username: Annotated[str, typer.Option(help="Publisher at that broker")] = "ns-publisher",
    password: Annotated[str, typer.Option(envvar="SENSORNET_SIM_NS_PASSWORD")] = "",
    check: Annotated[bool, typer.Option(help="Wait until InfluxDB holds what was sent")] = True,
    faults: Annotated[float, typer.Option(help="Share of uplinks given a fault")] = 0.0,
    fault_kinds: Annotated[
        str | None,
        typer.Option(help="Comma list of dropout, duplicate, clock_skew, out_of_range (all)"),
    ] = None,
    seed: int = 151,
    ground_truth: Annotated[Path | None, typer.Option(help="Ground-truth JSONL path")] = None,
    report: Annotated[
        bool, typer.Option(help="End with the simulator's account (as `simulate --report`)")
    ] = False,
) -> None:
    """Publish the registry's LoRaWAN sensors' uplinks as a network server would; one JSON
    line: sent, acked, stored, missing (and with --report the full account; exit 1 when it
    is not exact)."""
    from gateway_sim.faults import FaultPlan
    from gateway_sim.ns_publisher import LORAWAN_FAULTS

    if network not in ("chirpstack", "tts"):
        raise typer.BadParameter("chirpstack or tts", param_hint="--network")
    if not 0 <= faults <= 1:
        raise typer.BadParameter(f"a share between 0 and 1, got {faults}", param_hint="--faults")
    kinds = tuple(k.strip() for k in fault_kinds.split(",")) if fault_kinds else LORAWAN_FAULTS
    if set(kinds) - set(LORAWAN_FAULTS):
        raise typer.BadParameter(f"known: {', '.join(LORAWAN_FAULTS)}", param_hint="--fault-kinds")
    if faults > 0 and not report:
        raise typer.BadParameter("faults are accounted by --report", param_hint="--faults")
    plan = FaultPlan(rate=faults, kinds=kinds, seed=seed)
    o = {"rounds": rounds, "interval": interval, "network": network, "raw": raw, "host": host,
         "port": port, "username": username, "password": password, "check": check,
         "plan": plan, "ground_truth": ground_truth, "report": report}  # fmt: skip
    run_or_exit(_run(o))


async def _run(o: dict[str, Any]) -> None:
    from gateway_sim.faults import GroundTruth
    from gateway_sim.ns_publisher import publish_rounds, stored_of
    from sensornet.catalogue import load_catalogue
    from sensornet.district import load_district
    from sensornet.influx import influx_client
    from sensornet.registry.store import load_devices, open_registry
    from sensornet.settings import Settings

    settings = Settings()
    async with open_registry(settings.registry_database_url) as engine:
        fleet = [d for d in (await load_devices(engine)).values() if d.dev_eui and d.reporting]
    console.print(f"{len(fleet)} LoRaWAN sensors, {o['rounds']} rounds as {o['network']}",
                  style="dim")  # fmt: skip
    truth_path = o["ground_truth"] or (settings.state_dir / "ground-truth-lorawan.jsonl")
    truth = GroundTruth(truth_path if o["plan"].rate > 0 else None)
    start_ns = time.time_ns() - 1_000_000_000
    try:
        sent = await publish_rounds(
            host=o["host"], port=o["port"], username=o["username"], password=o["password"],
            network=o["network"], fleet=fleet, catalogue=load_catalogue(),
            district=load_district(), rounds=o["rounds"], interval_s=o["interval"],
            raw=o["raw"], faults=o["plan"], truth=truth,
        )  # fmt: skip
    finally:
        truth.close()
    lost = sum(truth.unacked.values())
    summary: dict[str, Any] = {
        "network": o["network"], "payload": "raw" if o["raw"] else "decoded",
        "sensors": len(fleet), "sent": len(sent), "acked": len(sent) - lost,
        "faults": sum(truth.faults.values()), "stored": None, "missing": None,
    }  # fmt: skip
    exact = True
    async with influx_client(settings) as influx:
        if o["report"]:
            from cli.simulate import print_report
            from gateway_sim.report import account

            with waiting("waiting for the account to settle (stored vs sent, up to 120 s)"):
                result = await account(influx, truth, {d.id: d.type for d in fleet},
                                       load_catalogue(), start_ns, timeout_s=120)  # fmt: skip
            print_report(result)
            summary["stored"] = result.totals["stored"]
            summary["missing"] = result.totals["missing"]
            summary["report"], exact = result.as_json(), result.exact
        elif o["check"]:
            deadline = time.monotonic() + 30
            while True:
                stored = sum((await stored_of(influx, fleet, sent)).values())
                if stored >= len(sent) - lost or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            # an unacknowledged uplink is the device's loss (it may be stored all the same)
            summary["stored"], summary["missing"] = stored, max(0, len(sent) - lost - stored)
    typer.echo(json.dumps(summary))
    if not exact:
        raise typer.Exit(1)
