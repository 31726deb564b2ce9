"""Alarms: active ones, history, acknowledgement, and the rules they come from."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import Engineer
from api.problems import Problem
from api.query_common import RFC3339
from sensornet.alarms.rules import SEVERITIES, RuleSet, load_rules
from sensornet.alarms.store import (
    AlarmRecord,
    acknowledge,
    active_alarms,
    alarm_history,
    create_alarm_tables,
    unacknowledge,
)
from sensornet.catalogue import Catalogue
from sensornet.registry.keys import Principal
from sensornet.registry.maintenance import current_windows

router = APIRouter(tags=["alarms"])


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.registry
    if not getattr(request.app.state, "alarm_tables", False):
        await create_alarm_tables(engine)
        request.app.state.alarm_tables = True
    return engine


def _out(catalogue: Catalogue, a: AlarmRecord) -> dict[str, Any]:
    unit = catalogue.get(a.type).quantities[a.quantity].unit
    return asdict(a) | {"active": a.active, "unit": unit}


class Acknowledgement(BaseModel):
    """Who acknowledges is the caller's API key, never a field a client may fill in
    (a ``by`` field is refused, so an old client learns its value is not what is kept)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=1000, description="Why, what is being done")


def acknowledger(who: Principal) -> str:
    """``key:<id>(<name>) [<role>]``, as the audit log names a key, within the column's
    128 characters."""
    return f"{Principal(who.key_id, who.name[:90], who.role).actor} [{who.role}]"


@router.get("/alarms", summary="Alarms currently active")
async def alarms(
    request: Request,
    type: str | None = None,
    subdistrict: str | None = None,
    severity: Annotated[str | None, Query(pattern="^(info|warning|major|critical)$")] = None,
    unacknowledged: bool = False,
) -> dict[str, Any]:
    catalogue: Catalogue = request.app.state.catalogue
    found = [
        a
        for a in await active_alarms(await _engine(request))
        if (type is None or a.type == type)
        and (subdistrict is None or a.subdistrict == subdistrict)
        and (severity is None or a.severity == severity)
        and (not unacknowledged or a.acknowledged_at is None)
    ]
    found.sort(key=lambda a: (-SEVERITIES.index(a.severity), a.raised_at))
    now = datetime.now(UTC)
    windows = [w for w in await current_windows(request.app.state.registry) if w.active_at(now)]
    return {
        "count": len(found),
        "items": [
            _out(catalogue, a)
            # notifications of it are silenced meanwhile (docs/alerting.md)
            | {"in_maintenance": any(w.covers(a.sensor_id, a.subdistrict) for w in windows)}
            for a in found
        ],
    }


@router.get("/alarms/history", summary="Alarm episodes, newest first")
async def history(
    request: Request,
    since: Annotated[datetime | None, Query(description="RFC 3339"), RFC3339] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="next_cursor of the previous page")
    ] = None,
) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        raise Problem(422, "Timestamps need an offset", "use e.g. 2026-11-25T08:00:00+08:00")
    found = await alarm_history(await _engine(request), since, cursor, limit)
    catalogue: Catalogue = request.app.state.catalogue
    return {
        "items": [_out(catalogue, a) for a in found],
        "next_cursor": found[-1].id if len(found) == limit else None,
    }


@router.post("/alarms/{alarm_id}/acknowledge", summary="Acknowledge an alarm (engineer)")
async def acknowledge_alarm(
    request: Request,
    who: Engineer,
    alarm_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: Annotated[Acknowledgement | None, Body()] = None,
) -> Any:
    """Recorded as acknowledged by the calling key (its id, name and role)."""
    note = body.note if body is not None else None
    record = await acknowledge(await _engine(request), alarm_id, acknowledger(who), note)
    if record is None:
        raise Problem(404, "Unknown alarm", f"no alarm {alarm_id}")
    return _out(request.app.state.catalogue, record)


@router.post("/alarms/{alarm_id}/unacknowledge", summary="Take an acknowledgement back (engineer)")
async def unacknowledge_alarm(
    request: Request, who: Engineer, alarm_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Any:
    """Its notifications resume: the alarm runner expires the acknowledgement's silence."""
    record = await unacknowledge(await _engine(request), alarm_id)
    if record is None:
        raise Problem(404, "Unknown alarm", f"no alarm {alarm_id}")
    return _out(request.app.state.catalogue, record)


@router.get("/alarms/rules", summary="The threshold rules, with units")
async def rules(request: Request) -> dict[str, Any]:
    catalogue: Catalogue = request.app.state.catalogue
    ruleset: RuleSet = load_rules()
    return {
        "timezone": ruleset.timezone,
        "night_hours": list(ruleset.night_hours),
        "rules": [
            asdict(r)
            | {"unit": catalogue.get(r.type).quantities[r.quantity].unit}
            | {"overrides": {k: asdict(v) for k, v in r.overrides.items()}}
            for r in ruleset.rules
        ],
    }
