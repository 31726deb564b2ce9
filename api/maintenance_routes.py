"""Maintenance windows: a field engineer puts a sensor or a whole subdistrict into
maintenance for a time window; nobody is notified of its alarms meanwhile (the alarm
runner silences them in Alertmanager), its alarms are still recorded, and the window shows
on the operations view (``GET /maintenance``, ``maintenance`` on each alarm)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from api.alarm_routes import acknowledger
from api.auth import Engineer
from api.problems import Problem
from sensornet.district import load_district
from sensornet.registry.maintenance import (
    InvalidMaintenance,
    MaintenanceNotFound,
    Window,
    add_window,
    current_windows,
    end_window,
    windows_for,
)

router = APIRouter(tags=["maintenance"])


class WindowIn(BaseModel):
    """Exactly one of ``sensor_id`` and ``subdistrict``; times with an offset."""

    model_config = ConfigDict(extra="forbid")

    sensor_id: str | None = Field(None, max_length=64)
    subdistrict: str | None = Field(None, max_length=64)
    starts_at: datetime | None = Field(None, description="RFC 3339; default now")
    ends_at: datetime = Field(description="RFC 3339")
    reason: str = Field("", max_length=1000)


def window_out(w: Window, now: datetime | None = None) -> dict[str, Any]:
    at = now or datetime.now(UTC)
    return asdict(w) | {"active": w.active_at(at)}


@router.post("/maintenance", status_code=201, summary="Start a maintenance window (engineer)")
async def add(request: Request, who: Engineer, body: WindowIn) -> dict[str, Any]:
    try:
        window = await add_window(
            request.app.state.registry,
            sensor_id=body.sensor_id,
            subdistrict=body.subdistrict,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            reason=body.reason,
            by=acknowledger(who),
            known_subdistricts=frozenset(load_district().subdistricts),
        )
    except InvalidMaintenance as exc:
        raise Problem(422, "Invalid maintenance window", str(exc)) from exc
    return window_out(window)


@router.get("/maintenance", summary="Maintenance windows running or to come")
async def current(request: Request) -> dict[str, Any]:
    found = await current_windows(request.app.state.registry)
    return {"count": len(found), "items": [window_out(w) for w in found]}


@router.get("/maintenance/history", summary="Every window of a sensor or subdistrict")
async def history(
    request: Request, sensor_id: str | None = None, subdistrict: str | None = None
) -> dict[str, Any]:
    found = await windows_for(request.app.state.registry, sensor_id, subdistrict)
    return {"count": len(found), "items": [window_out(w) for w in found]}


@router.post("/maintenance/{window_id}/end", summary="End a maintenance window now (engineer)")
async def end(
    request: Request, who: Engineer, window_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> dict[str, Any]:
    try:
        return window_out(await end_window(request.app.state.registry, window_id))
    except MaintenanceNotFound as exc:
        raise Problem(404, "Unknown maintenance window", str(exc)) from exc
