"""``sensornet registry ...`` and ``sensornet keys ...``: the registry from a shell.

Commands act on the registry database directly (whoever can run them owns the state
directory), and audit as ``cli:<unix user>``. Output is one JSON line per command.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.common import console, emit, json_mode, progress, step
from cli.errors import fail
from sensornet import broker_auth
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.errors import SensornetError
from sensornet.registry import bulk, keys
from sensornet.registry.schemas import Move, SensorIn, SensorPatch, StatusChange
from sensornet.registry.service import (
    MAX_PAGE,
    Registry,
    SensorFilter,
    parse_bbox,
    parse_dev_eui,
)
from sensornet.registry.store import open_registry
from sensornet.reserved import reserved_ids
from sensornet.settings import Settings
from sensornet.text_files import decode_text

T = TypeVar("T")
registry_app = typer.Typer(help="Register, change and look up sensors.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admin): create, list, revoke.", no_args_is_help=True)

Url = Annotated[str | None, typer.Option(help="Registry URL (SENSORNET_REGISTRY_URL)")]


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def _out(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


def _url(url: str | None) -> str:
    return url or Settings().registry_database_url


def run(url: str | None, job: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_registry(_url(url)) as engine:
            return await job(engine)

    try:
        return asyncio.run(main())
    except (SensornetError, ValidationError) as exc:
        fail(exc, console)


def _registry(engine: AsyncEngine) -> Registry:
    return Registry(engine, load_catalogue(), load_district(), reserved_ids(Settings()))


async def _sync(engine: AsyncEngine) -> None:
    """After a status change: a retired sensor leaves the broker's password file. A broker
    that does not confirm is an error (exit 1) naming what the registry kept."""
    await broker_auth.sync_broker(engine, broker_auth.broker_target(Settings()))


@registry_app.command("register")
def register(
    sensor_id: str,
    type_id: Annotated[str, typer.Option("--type")],
    subdistrict: Annotated[str, typer.Option()],
    lat: Annotated[float, typer.Option()],
    lon: Annotated[float, typer.Option()],
    status: Annotated[str, typer.Option()] = "planned",
    address: str = "",
    mounting: str = "",
    owner_department: str = "",
    gateway: Annotated[str | None, typer.Option()] = None,
    dev_eui: Annotated[
        str | None, typer.Option(help="LoRaWAN DevEUI (16 hex digits), for a LoRaWAN sensor")
    ] = None,
    url: Url = None,
) -> None:
    """Register one sensor."""

    async def job(engine: AsyncEngine) -> BaseModel:
        spec = SensorIn.model_validate(
            {
                "id": sensor_id,
                "type": type_id,
                "subdistrict": subdistrict,
                "lat": lat,
                "lon": lon,
                "status": status,
                "address": address,
                "mounting": mounting,
                "owner_department": owner_department,
                "gateway_id": gateway,
                "dev_eui": dev_eui,
            }
        )
        return await _registry(engine).register(spec, actor())

    _out(run(url, job))


@registry_app.command("update")
def update(
    sensor_id: str,
    changes: Annotated[str, typer.Argument(help='JSON object, e.g. {"firmware": "2.1"}')],
    url: Url = None,
) -> None:
    """Change fields of a sensor (not its location or status: see move, status)."""

    async def job(engine: AsyncEngine) -> BaseModel:
        patch = SensorPatch.model_validate_json(changes)
        return await _registry(engine).update(sensor_id, patch, actor())

    _out(run(url, job))


@registry_app.command("move")
def move(
    sensor_id: str,
    lat: Annotated[float, typer.Option()],
    lon: Annotated[float, typer.Option()],
    subdistrict: Annotated[str | None, typer.Option()] = None,
    address: Annotated[str | None, typer.Option()] = None,
    url: Url = None,
) -> None:
    """Move a sensor to new coordinates (and subdistrict/address)."""

    async def job(engine: AsyncEngine) -> BaseModel:
        spec = Move(lat=lat, lon=lon, subdistrict=subdistrict, address=address)
        return await _registry(engine).move(sensor_id, spec, actor())

    _out(run(url, job))


@registry_app.command("status")
def status(sensor_id: str, new_status: str, url: Url = None) -> None:
    """Change status along the lifecycle planned → installed → active ⇄ maintenance."""

    async def job(engine: AsyncEngine) -> BaseModel:
        change = StatusChange.model_validate({"status": new_status})
        out = await _registry(engine).set_status(sensor_id, change, actor())
        await _sync(engine)
        return out

    _out(run(url, job))


@registry_app.command("retire")
def retire(sensor_id: str, url: Url = None) -> None:
    """Retire a sensor: its readings are refused from then on."""

    async def job(engine: AsyncEngine) -> BaseModel:
        out = await _registry(engine).retire(sensor_id, actor())
        await _sync(engine)
        return out

    _out(run(url, job))


@registry_app.command("get")
def get(sensor_id: str, url: Url = None) -> None:
    """One sensor as JSON."""
    _out(run(url, lambda engine: _registry(engine).get(sensor_id)))


@registry_app.command("list")
def list_(
    type_id: Annotated[str | None, typer.Option("--type")] = None,
    subdistrict: str | None = None,
    status: str | None = None,
    bbox: Annotated[str | None, typer.Option(help="min_lon,min_lat,max_lon,max_lat")] = None,
    q: Annotated[str | None, typer.Option(help="Text in id, address, description")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Sensors per page")] = 100,
    cursor: str | None = None,
    dev_eui: Annotated[str | None, typer.Option(help="LoRaWAN DevEUI, any spelling")] = None,
    url: Url = None,
) -> None:
    """One page of sensors: {"items": [...], "next_cursor": ...}."""

    async def job(engine: AsyncEngine) -> dict[str, Any]:
        where = SensorFilter(
            type_id,
            subdistrict,
            status,
            parse_bbox(bbox) if bbox else None,
            q,
            parse_dev_eui(dev_eui) if dev_eui else None,
        )
        items, after = await _registry(engine).search(where, limit, cursor)
        return {"items": [i.model_dump(mode="json") for i in items], "next_cursor": after}

    _out(run(url, job))


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Option(help="viewer, engineer or admin")] = "viewer",
    name: str = "",
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d (m, h, d, w); default: until revoked")
    ] = None,
    url: Url = None,
) -> None:
    """Create an API key and print it once (only its hash is kept)."""

    async def job(engine: AsyncEngine) -> tuple[keys.KeyInfo, str]:
        lifetime = keys.parse_lifetime(expires_in) if expires_in else None
        return await keys.create_key(engine, role, name, actor(), lifetime)

    info, secret = run(url, job)
    _out(_key(info) | {"key": secret})


def _key(info: keys.KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "role": info.role,
        "name": info.name,
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at and info.expires_at.isoformat(),
        "last_used_at": info.last_used_at and info.last_used_at.isoformat(),
        "revoked": info.revoked,
        "expired": info.expired,
    }


@keys_app.command("list")
def list_keys(url: Url = None) -> None:
    """Every key: role, created, expires, last used (as the API recorded it), revoked;
    never the secret."""
    _out([_key(k) for k in run(url, keys.list_keys)])


@keys_app.command("revoke")
def revoke_key(key_id: str, url: Url = None) -> None:
    """Revoke a key: the next request with it gets 401."""
    info = run(url, lambda engine: keys.revoke_key(engine, key_id, actor()))
    _out({"id": info.id, "revoked": info.revoked})


@registry_app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="CSV (template columns) or JSON file")],
    dry_run: Annotated[bool, typer.Option(help="Check and report, change nothing")] = False,
    url: Url = None,
) -> None:
    """Import sensors all-or-nothing; prints one JSON report (exit 1 if any row is bad)."""
    text, encoding = decode_text(path.read_bytes())
    if encoding not in ("UTF-8", "UTF-8 with BOM"):
        typer.echo(f"read {path} as {encoding}", err=True)
    try:
        rows = bulk.parse_json(text) if path.suffix.lower() == ".json" else bulk.parse_csv(text)
    except bulk.ImportFormatError as exc:
        typer.echo(f"error: {path}: {exc}", err=True)
        raise typer.Exit(1) from exc

    async def job(engine: AsyncEngine) -> bulk.ImportReport:
        with progress(f"import {path.name}", unit="rows") as bar:

            def moved(phase: str, done: int, total: int) -> None:
                step(bar, done, total, f"import {path.name}: {phase}")

            report = await bulk.import_sensors(_registry(engine), rows, actor(), dry_run, moved)
            if report.applied and report.updated:
                bar.update(bar.task_ids[0], description="updating the broker's devices")
                await _sync(engine)
        return report

    report = run(url, job)
    _out({**report.as_dict(), "encoding": encoding})
    if report.errors:
        raise typer.Exit(1)


@registry_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or geojson")] = "csv",
    output: Annotated[Path | None, typer.Option("-o", help="File (default stdout)")] = None,
    url: Url = None,
) -> None:
    """Every sensor as CSV (re-importable) or GeoJSON."""
    if fmt not in ("csv", "geojson"):
        typer.echo("error: --format is csv or geojson", err=True)
        raise typer.Exit(2)
    if json_mode() and output is None and fmt == "csv":
        typer.echo("error: --json on stdout needs --format geojson (or -o FILE)", err=True)
        raise typer.Exit(2)
    found = run(url, lambda engine: bulk.all_sensors(_registry(engine)))
    if fmt == "csv":
        text = bulk.to_csv(found)
    else:
        text = json.dumps(bulk.to_geojson(found), ensure_ascii=False)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        emit({"written": str(output), "format": fmt, "sensors": len(found)}, human="")


@registry_app.command("template")
def template(
    output: Annotated[Path | None, typer.Option("-o", help="File (default stdout)")] = None,
) -> None:
    """The CSV template a field team fills in."""
    text = (files("sensornet") / "data" / "sensors_template.csv").read_text(encoding="utf-8")
    if json_mode():  # the columns and the file's text, as one document
        if output is not None:
            output.write_text(text, encoding="utf-8")
        columns = text.splitlines()[0].split(",") if text else []
        emit({"written": output and str(output), "columns": columns, "csv": text})
    elif output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@registry_app.command("credentials")
def credentials(
    sensor_ids: Annotated[list[str] | None, typer.Argument(help="Sensor or gateway ids")] = None,
    missing: Annotated[bool, typer.Option(help="Every live sensor without credentials")] = False,
    revoke: Annotated[bool, typer.Option(help="Revoke instead of issue/rotate")] = False,
    output: Annotated[
        Path | None, typer.Option("-o", help="Write {id: password} JSON here")
    ] = None,
    url: Url = None,
) -> None:
    """Issue, rotate (issue again) or revoke MQTT passwords, then update the local broker.

    Passwords are printed (or written to -o, mode 600) once; only hashes are kept."""
    settings = Settings()

    async def job(engine: AsyncEngine) -> dict[str, Any]:
        ids = list(sensor_ids or [])
        if missing:
            ids += await broker_auth.without_credentials(engine)
        target = broker_auth.broker_target(settings)
        await broker_auth.check_broker(target)  # nothing changes if it cannot be reached
        if revoke:
            count = await broker_auth.revoke_credentials(engine, ids, actor())
            result: dict[str, Any] = {"revoked": count}
        else:
            result = {"issued": await broker_auth.issue_credentials(engine, ids, actor())}
        try:
            result["broker_devices"] = await broker_auth.sync_broker(engine, target)
        except broker_auth.BrokerSyncError as exc:
            # the registry has the new hashes: keep the passwords, they work once the
            # broker is back and `sensornet registry sync-broker` has run
            result["broker_error"] = str(exc)
        return result

    result = run(url, job)
    issued = result.get("issued")
    if output is not None and issued is not None:
        output.touch(mode=0o600)
        output.write_text(json.dumps(issued, indent=1))
        result["issued"] = len(issued)
        result["written"] = str(output)
    _out(result)
    if "broker_error" in result:
        typer.echo(
            f"error: the broker did not take the change: {result['broker_error']}; once it "
            "is back, run `sensornet registry sync-broker`",
            err=True,
        )
        raise typer.Exit(1)


@registry_app.command("sync-broker")
def sync_broker(url: Url = None) -> None:
    """Make the broker accept exactly the registry's devices (and confirm it did): the
    reconcile after a broker outage or a restored backup."""

    async def job(engine: AsyncEngine) -> dict[str, Any]:
        target = broker_auth.broker_target(Settings())
        return {"broker_devices": await broker_auth.sync_broker(engine, target)}

    _out(run(url, job))
