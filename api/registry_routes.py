"""Registry endpoints: sensors (register, update, move, status, retire, look up, list)
and API keys. Reads need viewer, sensor writes engineer, keys admin; every write is
audited with the caller's key id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api import bulk_routes, gateway_routes, sensor_view
from api.auth import Admin, Engineer, Viewer
from api.broker_sync import apply, ensure_broker, sync
from api.problems import Problem, concealed
from sensornet import broker_auth
from sensornet.district import load_district
from sensornet.errors import InvalidCursor, SensornetError
from sensornet.registry import keys
from sensornet.registry.lifecycle import TransitionError
from sensornet.registry.schemas import (
    AuditOut,
    Move,
    SensorIn,
    SensorOut,
    SensorPage,
    SensorPatch,
    Status,
    StatusChange,
)
from sensornet.registry.service import (
    MAX_PAGE,
    DevEuiTaken,
    InvalidSensor,
    NameTaken,
    Registry,
    SensorExists,
    SensorFilter,
    SensorNotFound,
    parse_bbox,
    parse_dev_eui,
)
from sensornet.reserved import reserved_ids

router = APIRouter()
# before /sensors/{sensor_id}, so "export.csv" is not taken for a sensor id
router.include_router(bulk_routes.router)
router.include_router(sensor_view.router)
router.include_router(gateway_routes.router)

#: The errors whose message is written for the caller (it names their mistake).
_STATUS = {
    SensorNotFound: (404, "Unknown sensor"),
    SensorExists: (409, "Sensor already registered"),
    DevEuiTaken: (409, "DevEUI already registered"),
    NameTaken: (409, "Name already registered"),
    TransitionError: (409, "Status change not allowed"),
    InvalidSensor: (422, "Invalid sensor entry"),
    InvalidCursor: (422, "Invalid cursor"),
    keys.ApiKeyError: (404, "Unknown API key"),
    keys.LastAdminKey: (409, "Last admin key"),
    broker_auth.CredentialsError: (404, "Not registered"),
}


def problem(exc: SensornetError) -> Problem:
    """The caller's mistake as a problem with our message; anything else (a failure
    behind the API) concealed with an error id (api.problems)."""
    for kind in type(exc).__mro__:
        if kind in _STATUS:
            status, title = _STATUS[kind]
            return Problem(status, title, str(exc))
    return concealed(exc)


def registry(request: Request) -> Registry:
    state = request.app.state
    return Registry(state.registry, state.catalogue, load_district(), reserved_ids(state.settings))


class Registered(SensorOut):
    mqtt_username: str
    mqtt_password: str = Field(description="Shown once; only its hash is kept")


class Credentials(BaseModel):
    sensor_id: str
    mqtt_username: str
    mqtt_password: str | None = Field(None, description="Shown once; only its hash is kept")
    broker_devices: int = Field(description="Devices the broker now accepts")


@router.post("/sensors", status_code=201, response_model=Registered, tags=["registry"])
async def register_sensor(request: Request, who: Engineer, spec: SensorIn) -> Registered:
    """Register a sensor and issue its MQTT password (shown in this response only); it can
    connect when this returns. 503 if the broker cannot take it (see the problem's detail)."""
    await ensure_broker(request)
    try:
        out, password = await broker_auth.register_with_credentials(
            registry(request), spec, who.actor
        )
    except SensornetError as exc:
        raise problem(exc) from exc
    await apply(
        request,
        f"{spec.id} is registered with new credentials (not shown again: issue new ones "
        f"with POST /sensors/{spec.id}/credentials)",
    )
    return Registered(**out.model_dump(), mqtt_username=spec.id, mqtt_password=password)


@router.post("/sensors/{sensor_id}/credentials", response_model=Credentials, tags=["registry"])
async def rotate_credentials(request: Request, who: Engineer, sensor_id: str) -> Credentials:
    """Issue (or rotate) a sensor's MQTT password; the old one stops working at once."""
    await ensure_broker(request)
    try:
        await registry(request).get(sensor_id)
        issued = await broker_auth.issue_credentials(
            request.app.state.registry, [sensor_id], who.actor
        )
    except SensornetError as exc:
        raise problem(exc) from exc
    count = await sync(
        request, f"{sensor_id} has new credentials (not shown again: issue new ones)"
    )
    return Credentials(
        sensor_id=sensor_id,
        mqtt_username=sensor_id,
        mqtt_password=issued[sensor_id],
        broker_devices=count,
    )


@router.delete("/sensors/{sensor_id}/credentials", response_model=Credentials, tags=["registry"])
async def revoke_credentials(request: Request, who: Engineer, sensor_id: str) -> Credentials:
    """Revoke a sensor's MQTT password: it is disconnected and can no longer connect."""
    await ensure_broker(request)
    try:
        await registry(request).get(sensor_id)
        await broker_auth.revoke_credentials(request.app.state.registry, [sensor_id], who.actor)
    except SensornetError as exc:
        raise problem(exc) from exc
    count = await sync(request, f"{sensor_id}'s credentials are revoked in the registry")
    return Credentials(sensor_id=sensor_id, mqtt_username=sensor_id, broker_devices=count)


@router.get("/sensors", response_model=SensorPage, tags=["registry"])
async def list_sensors(
    request: Request,
    who: Viewer,
    type: str | None = None,
    subdistrict: str | None = None,
    status: Status | None = None,
    bbox: Annotated[
        str | None, Query(description="min_lon,min_lat,max_lon,max_lat", max_length=200)
    ] = None,
    q: Annotated[str | None, Query(description="Text in id, address, description")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    dev_eui: Annotated[
        str | None, Query(description="LoRaWAN DevEUI, any spelling", max_length=64)
    ] = None,
) -> SensorPage:
    try:
        where = SensorFilter(
            type,
            subdistrict,
            status,
            parse_bbox(bbox) if bbox else None,
            q,
            parse_dev_eui(dev_eui) if dev_eui else None,
        )
        items, next_cursor = await registry(request).search(where, limit, cursor)
    except SensornetError as exc:
        raise problem(exc) from exc
    return SensorPage(items=items, next_cursor=next_cursor)


@router.get("/sensors/{sensor_id}", response_model=SensorOut, tags=["registry"])
async def get_sensor(request: Request, who: Viewer, sensor_id: str) -> SensorOut:
    try:
        return await registry(request).get(sensor_id)
    except SensornetError as exc:
        raise problem(exc) from exc


@router.patch("/sensors/{sensor_id}", response_model=SensorOut, tags=["registry"])
async def update_sensor(
    request: Request, who: Engineer, sensor_id: str, patch: SensorPatch
) -> SensorOut:
    try:
        return await registry(request).update(sensor_id, patch, who.actor)
    except SensornetError as exc:
        raise problem(exc) from exc


@router.post("/sensors/{sensor_id}/move", response_model=SensorOut, tags=["registry"])
async def move_sensor(request: Request, who: Engineer, sensor_id: str, move: Move) -> SensorOut:
    try:
        return await registry(request).move(sensor_id, move, who.actor)
    except SensornetError as exc:
        raise problem(exc) from exc


@router.post("/sensors/{sensor_id}/status", response_model=SensorOut, tags=["registry"])
async def change_status(
    request: Request, who: Engineer, sensor_id: str, change: StatusChange
) -> SensorOut:
    try:
        out = await registry(request).set_status(sensor_id, change, who.actor)
    except SensornetError as exc:
        raise problem(exc) from exc
    await apply(request, f"{sensor_id} is now {change.status}")
    return out


@router.post("/sensors/{sensor_id}/retire", response_model=SensorOut, tags=["registry"])
async def retire_sensor(request: Request, who: Engineer, sensor_id: str) -> SensorOut:
    await ensure_broker(request)
    try:
        out = await registry(request).retire(sensor_id, who.actor)
    except SensornetError as exc:
        raise problem(exc) from exc
    await apply(request, f"{sensor_id} is retired")  # it leaves the broker's password file
    return out


@router.get("/sensors/{sensor_id}/history", response_model=list[AuditOut], tags=["registry"])
async def sensor_history(
    request: Request,
    who: Viewer,
    sensor_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    rows = await registry(request).history(sensor_id, limit)
    return [
        AuditOut(
            id=r.id,
            at=r.at,
            actor=r.actor,
            action=r.action,
            entity=r.entity,
            entity_id=r.entity_id,
            before=r.before,
            after=r.after,
        )
        for r in rows
    ]


class KeyIn(BaseModel):
    role: Literal["viewer", "engineer", "admin"] = "viewer"
    name: str = Field("", max_length=128)
    expires_in: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]{0,6}[mhdw]$",
        description="Lifetime, e.g. 90d (m, h, d, w; at most 3650d); none: until revoked",
        examples=["90d"],
    )


class KeyOut(BaseModel):
    id: str
    role: str
    name: str
    created_at: datetime
    expires_at: datetime | None = Field(description="None: valid until revoked")
    last_used_at: datetime | None = Field(
        description="Recorded by the API once a minute at most (docs/registry.md)"
    )
    revoked: bool
    expired: bool
    key: str | None = Field(None, description="The secret, in the creation answer only")


def _key_out(info: keys.KeyInfo, secret: str | None = None) -> KeyOut:
    return KeyOut(
        id=info.id,
        role=info.role,
        name=info.name,
        created_at=info.created_at,
        expires_at=info.expires_at,
        last_used_at=info.last_used_at,
        revoked=info.revoked,
        expired=info.expired,
        key=secret,
    )


@router.post("/keys", status_code=201, response_model=KeyOut, tags=["keys"])
async def create_key(request: Request, who: Admin, body: KeyIn) -> KeyOut:
    """Create a key; the secret is in this answer only (the registry keeps its hash)."""
    try:
        lifetime = keys.parse_lifetime(body.expires_in) if body.expires_in else None
        info, secret = await keys.create_key(
            request.app.state.registry, body.role, body.name, who.actor, lifetime
        )
    except keys.ApiKeyError as exc:
        raise Problem(422, "Invalid API key request", str(exc)) from exc
    request.app.state.key_cache.created(secret)
    return _key_out(info, secret)


@router.get("/keys", response_model=list[KeyOut], tags=["keys"])
async def list_keys(request: Request, who: Admin) -> list[KeyOut]:
    """Every key with its role, creation, expiry, last use and revocation (no secrets)."""
    return [_key_out(k) for k in await keys.list_keys(request.app.state.registry)]


@router.delete("/keys/{key_id}", response_model=KeyOut, tags=["keys"])
async def revoke_key(request: Request, who: Admin, key_id: str) -> KeyOut:
    try:
        info = await keys.revoke_key(request.app.state.registry, key_id, who.actor)
    except SensornetError as exc:
        raise problem(exc) from exc
    request.app.state.key_cache.forget(key_id)
    return _key_out(info)
