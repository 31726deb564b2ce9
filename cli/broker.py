"""``sensornet broker ...``: the broker's credential store for deployments (compose,
systemd) where the broker is not one of ``sensornet services``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from sensornet import broker_auth, broker_files
from sensornet.errors import SensornetError
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.services import broker_acl

broker_app = typer.Typer(help="The broker's credential store.", no_args_is_help=True)


@broker_app.command("setup")
def setup(
    reload: Annotated[
        bool, typer.Option(help="Have a running broker reload and confirm (default: not yet)")
    ] = False,
) -> None:
    """Write the store (SENSORNET_BROKER_AUTH_DIR): the ingester's login, the ACL and the
    registry's devices; run before the broker starts, and after changing the ingester's
    password. No fleet identity: the simulator adds it while it runs (test-only). Files
    are mode 640: make the directory setgid to the broker's group (deploy/README.md)."""
    settings = Settings()
    target = broker_auth.broker_target(settings)
    auth_dir = target.auth_dir

    async def job() -> int:
        auth_dir.mkdir(parents=True, exist_ok=True)
        async with broker_files.locked(auth_dir):
            broker_auth.install_static(
                auth_dir,
                {settings.mqtt_ingest_user: settings.mqtt_ingest_password.get_secret_value()},
                broker_acl(settings.topic_prefix, settings.mqtt_ingest_user),
            )
            async with open_registry(settings.registry_database_url) as engine:
                entries = await broker_auth.broker_entries(engine)
            if reload:
                await broker_files.deliver(target, entries)
            else:
                text = broker_files.password_lines(entries)
                broker_files.write_part(auth_dir, broker_files.PASSWD, broker_files.DEVICES, text)
                broker_files.assemble(auth_dir)
        return len(entries)

    try:
        count = asyncio.run(job())
    except SensornetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"auth_dir": str(auth_dir), "broker_devices": count}))


@broker_app.command("auth-serve")
def auth_serve() -> None:
    """Scaled shape: answer the RabbitMQ cluster's device logins from the registry
    (rabbitmq_auth_backend_http; SENSORNET_BROKER_AUTH_HOST/PORT) until SIGTERM."""
    from cli.cluster import auth_serve as serve

    serve(Settings())
