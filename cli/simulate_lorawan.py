"""``sensornet simulate-lorawan``: the registry's LoRaWAN sensors report through a
simulated network server (ChirpStack v4 or The Things Stack v3 JSON on its MQTT broker),
then the platform's store is checked against what was sent (docs/inputs/lorawan.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer

from cli.common import console


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
) -> None:
    """Publish the registry's LoRaWAN sensors' uplinks as a network server would; one JSON
    line: sent, stored, missing."""
    if network not in ("chirpstack", "tts"):
        raise typer.BadParameter("chirpstack or tts", param_hint="--network")
    typer.echo(json.dumps(asyncio.run(_run(rounds, interval, network, raw, host, port,
                                           username, password, check))))  # fmt: skip


async def _run(
    rounds: int, interval: float, network: Any, raw: bool, host: str, port: int,
    username: str, password: str, check: bool,
) -> dict[str, Any]:  # fmt: skip
    from gateway_sim.ns_publisher import publish_rounds, stored_of
    from sensornet.catalogue import load_catalogue
    from sensornet.district import load_district
    from sensornet.influx import influx_client
    from sensornet.registry.store import load_devices, open_registry
    from sensornet.settings import Settings

    settings = Settings()
    async with open_registry(settings.registry_database_url) as engine:
        fleet = [d for d in (await load_devices(engine)).values() if d.dev_eui and d.reporting]
    console.print(f"{len(fleet)} LoRaWAN sensors, {rounds} rounds as {network}", style="dim")
    sent = await publish_rounds(
        host=host, port=port, username=username, password=password, network=network,
        fleet=fleet, catalogue=load_catalogue(), district=load_district(), rounds=rounds,
        interval_s=interval, raw=raw,
    )  # fmt: skip
    stored = 0
    if check:
        async with influx_client(settings) as influx:
            deadline = time.monotonic() + 30
            while True:
                counts = await stored_of(influx, fleet, sent)
                stored = sum(counts.values())
                if stored >= len(sent) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
    return {"network": network, "payload": "raw" if raw else "decoded", "sensors": len(fleet),
            "sent": len(sent), "stored": stored if check else None,
            "missing": len(sent) - stored if check else None}  # fmt: skip
