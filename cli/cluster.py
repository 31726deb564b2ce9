"""The scaled shape from the command line: ``services up --cluster 3`` and friends call
these, and ``sensornet broker auth-serve`` runs the broker login endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cli.common import console
from sensornet.settings import Settings


def cluster_up(settings: Settings, size: int, tls: tuple[Path, Path] | None) -> None:
    """InfluxDB as in the default shape, the RabbitMQ cluster instead of Mosquitto."""
    from wiring.broker_auth_service import auth_url
    from wiring.rabbitmq import start_cluster
    from wiring.services import ensure_binaries, platform_services

    ensure_binaries()
    _, influx = platform_services(settings)
    influx.start()
    console.print(f"{influx.name}: up on {influx.host}:{influx.port}")
    cluster = start_cluster(settings, size, auth_url=auth_url(settings), tls=tls)
    for node in cluster.node_status():
        console.print(
            f"{node['name']}: amqp {node['amqp_port']} mqtt {node['mqtt_port']}"
            + (f" mqtts {node['mqtts_port']}" if node["mqtts_port"] else "")
        )
    urls = ",".join(f"amqp://{cluster.host}:{n.ports.amqp}/" for n in cluster.nodes)
    console.print(
        "ingesters: SENSORNET_INGEST_INPUT=amqp SENSORNET_AMQP_URLS="
        f"{urls} sensornet ingest --client-id <name>; device logins: sensornet broker "
        f"auth-serve (port {settings.broker_auth_port})"
    )


def cluster_home_exists(settings: Settings) -> bool:
    from wiring.rabbitmq import cluster_home

    return (cluster_home(settings) / "cluster.json").exists()


def cluster_status(settings: Settings) -> dict[str, Any]:
    from wiring.rabbitmq import RabbitCluster, cluster_home

    raw = json.loads((cluster_home(settings) / "cluster.json").read_text())
    cluster = RabbitCluster(cluster_home(settings), len(raw["nodes"]))
    return {"rabbitmq": cluster.node_status()}


def cluster_down(settings: Settings) -> None:
    from wiring.rabbitmq import RabbitCluster, cluster_home

    raw = json.loads((cluster_home(settings) / "cluster.json").read_text())
    cluster = RabbitCluster(cluster_home(settings), len(raw["nodes"]))
    cluster.stop()
    for node in cluster.nodes:
        console.print(f"{node.node_name}: stopped")


def auth_serve(settings: Settings) -> None:
    import asyncio

    from wiring.broker_auth_service import run_broker_auth
    from wiring.parts import stop_on_signals

    async def main() -> None:
        async with stop_on_signals() as stop:
            await run_broker_auth(settings, stop)

    typer.echo(
        json.dumps({"listening": f"{settings.broker_auth_host}:{settings.broker_auth_port}"})
    )
    asyncio.run(main())
