"""Northbound subscriptions: register (admin), look at, pause, resume, delete, and account
for delivery. Registering and deleting take the admin role because a subscription sends
the city's data out of the platform under a secret; an engineer on duty may look at
them, pause one and resume one once its receiver is fixed (docs/northbound.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import Admin, Engineer
from api.problems import Problem
from api.query_common import RFC3339
from sensornet.district import load_district
from sensornet.errors import SensornetError
from sensornet.northbound import store
from sensornet.northbound.events import Cursor
from sensornet.northbound.late_reads import LATE_STREAM, pending_late
from sensornet.northbound.progress import (
    MINUTE_NS,
    PENDING_CAP,
    count_events,
    window_start,
)
from sensornet.northbound.secretbox import box_from_settings
from sensornet.northbound.signing import InvalidSecret, new_secret, secret_key
from sensornet.northbound.sources import NOTED
from sensornet.northbound.spec import InvalidSubscription, check_spec
from sensornet.registry.store import load_devices
from sensornet.settings import Settings

router = APIRouter(prefix="/northbound", tags=["northbound"])

MAX_WINDOW_S = 24 * 3600
WRITE_STAMPED_SETTLE_NS = 1_000_000_000


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    types: list[str] = Field(default_factory=list, description="Sensor type ids; empty: all")
    subdistricts: list[str] = Field(default_factory=list, description="Empty: all")
    sensors: list[str] = Field(default_factory=list, description="Sensor ids; empty: all")


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Who receives, e.g. the operations platform's name")
    url: str = Field(description="https:// endpoint (http:// to loopback only, by default)")
    secret: SecretStr | None = Field(
        None,
        description="Signing secret, whsec_<base64 of 24-64 bytes>; omit it and one is "
        "generated and returned once. Never shown again either way",
    )
    kinds: list[str] = Field(description="readings, status, alarms, aggregates")
    filter: FilterIn = Field(default_factory=FilterIn)
    resolution: str | None = Field(None, description="For aggregates: 1m, 5m, 15m or 1h")
    start: datetime | None = Field(
        None, description="Deliver events from this time on (default now; earlier backfills)"
    )


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.registry
    return engine


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _found(request: Request, subscription_id: str) -> store.Subscription:
    sub = await store.get_subscription(_engine(request), subscription_id)
    if sub is None:
        raise Problem(404, "Unknown subscription", f"no subscription {subscription_id!r}")
    return sub


@router.post("/subscriptions", status_code=201, summary="Register a subscription (admin)")
async def register(request: Request, who: Admin, body: SubscriptionIn) -> dict[str, Any]:
    settings = _settings(request)
    try:
        spec = check_spec(
            body.name, body.url, body.kinds, body.filter.types, body.filter.subdistricts,
            body.filter.sensors, body.resolution, request.app.state.catalogue,
            load_district(), settings.northbound_allow_http,
        )  # fmt: skip
        generated = body.secret is None
        secret = new_secret() if body.secret is None else body.secret.get_secret_value()
        secret_key(secret)
    except (InvalidSubscription, InvalidSecret) as exc:
        raise Problem(422, "Invalid subscription", str(exc)) from exc
    if body.start is not None and body.start.tzinfo is None:
        raise Problem(422, "Invalid subscription", "start needs an offset, e.g. +08:00")
    now = time.time_ns()
    start_ns = now if body.start is None else int(body.start.timestamp() * 1e9)
    if start_ns > now:
        raise Problem(422, "Invalid subscription", "start is in the future")
    sealed = box_from_settings(settings).seal(secret)
    sub = await store.create_subscription(_engine(request), spec, sealed, who.actor, start_ns)
    out = sub.public()
    if generated:
        out["secret"] = secret  # shown in this answer only
    return out


@router.get("/subscriptions", summary="Subscriptions and their delivery counters")
async def listing(request: Request, who: Engineer) -> dict[str, Any]:
    subs = await store.list_subscriptions(_engine(request))
    return {"count": len(subs), "items": [s.public() for s in subs]}


@router.get("/subscriptions/{subscription_id}", summary="One subscription: delivered, pending")
async def one(request: Request, who: Engineer, subscription_id: str) -> dict[str, Any]:
    """``pending``: events not yet acknowledged, up to now, points stored late and waiting
    in their notes included (``pending_capped``: at least that many); ``lag_s``: age of the
    oldest of those the regular read owes (0 when none)."""
    sub = await _found(request, subscription_id)
    engine = _engine(request)
    cursors = await store.cursors(engine, sub.id)
    devices = await load_devices(engine) if "status" in sub.spec.kinds else {}
    now = time.time_ns()
    pending: dict[str, int] = {}
    capped = False
    oldest: int | None = None
    for kind in sub.spec.kinds:
        try:
            c = await count_events(
                request.app.state.influx, kind, sub.spec, request.app.state.catalogue,
                devices, cursors[kind], now + 1, int(_settings(request).northbound_settle_s * 1e9),
                PENDING_CAP,
            )  # fmt: skip
            late = 0
            if kind in NOTED:  # stored late, waiting in the notes (docs/northbound.md)
                late = await pending_late(
                    request.app.state.influx, sub.spec, sub.start_ns, kind,
                    cursors.get(LATE_STREAM, Cursor(sub.start_ns)), cursors[kind],
                    (sub.start_ns, now + 1),
                )  # fmt: skip
        except SensornetError as exc:
            raise Problem(503, "InfluxDB unavailable", "pending events cannot be counted") from exc
        pending[kind] = c.events + late
        capped |= c.capped
        if c.first_ns is not None:
            oldest = c.first_ns if oldest is None else min(oldest, c.first_ns)
    return sub.public() | {
        "pending": sum(pending.values()),
        "pending_by_kind": pending,
        "pending_capped": capped,
        "lag_s": 0.0 if oldest is None else max(0.0, (now - oldest) / 1e9),
        "cursors": {
            k: {"time": datetime.fromtimestamp(c.time_ns / 1e9, UTC).isoformat(), "key": c.key}
            for k, c in cursors.items()
        },
    }


@router.post("/subscriptions/{subscription_id}/pause", summary="Stop pushing (engineer)")
async def pause(request: Request, who: Engineer, subscription_id: str) -> dict[str, Any]:
    await _found(request, subscription_id)
    sub = await store.pause(_engine(request), subscription_id, f"paused by {who.actor}", who.actor)
    assert sub is not None
    return sub.public()


@router.post("/subscriptions/{subscription_id}/resume", summary="Push again (engineer)")
async def resume(request: Request, who: Engineer, subscription_id: str) -> dict[str, Any]:
    """From where it stopped: nothing pending is skipped."""
    await _found(request, subscription_id)
    sub = await store.resume(_engine(request), subscription_id, who.actor)
    assert sub is not None
    return sub.public()


@router.delete("/subscriptions/{subscription_id}", status_code=204, summary="Delete (admin)")
async def remove(request: Request, who: Admin, subscription_id: str) -> Response:
    if not await store.delete_subscription(_engine(request), subscription_id, who.actor):
        raise Problem(404, "Unknown subscription", f"no subscription {subscription_id!r}")
    return Response(status_code=204)


@router.get(
    "/subscriptions/{subscription_id}/accounting",
    summary="Events a subscription should have received and acknowledged in a window",
)
async def accounting(
    request: Request,
    who: Engineer,
    subscription_id: str,
    start: Annotated[datetime, Query(description="RFC 3339, a whole minute, inclusive"), RFC3339],
    end: Annotated[datetime, Query(description="RFC 3339, a whole minute, exclusive"), RFC3339],
) -> dict[str, Any]:
    """``expected``: the events in InfluxDB now that match the subscription, timed in the
    window and not before the subscription's ``start``; ``acknowledged``: those its
    receiver answered 2xx for (each counted once, whatever was resent); ``pending``: those in
    the window the pusher has yet to deliver, points stored late and waiting in their notes
    included; ``settled``: none pending and the window ended longer than the settle time
    ago (a point stored late after that is pending again until delivered)."""
    sub = await _found(request, subscription_id)
    if start.tzinfo is None or end.tzinfo is None:
        raise Problem(422, "Invalid window", "start and end need an offset, e.g. Z")
    start_ns, end_ns = int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9
    if start.timestamp() % 60 or end.timestamp() % 60:
        raise Problem(422, "Invalid window", "start and end must be whole minutes")
    if not 0 < end_ns - start_ns <= MAX_WINDOW_S * 10**9:
        raise Problem(422, "Invalid window", f"end after start, at most {MAX_WINDOW_S} s later")
    engine = _engine(request)
    cursors = await store.cursors(engine, sub.id)
    acked = await store.acked(engine, sub.id, start_ns // MINUTE_NS, end_ns // MINUTE_NS)
    devices = await load_devices(engine) if "status" in sub.spec.kinds else {}
    settle_ns = int(_settings(request).northbound_settle_s * 1e9)
    now = time.time_ns()
    streams: dict[str, dict[str, Any]] = {}
    for kind in sub.spec.kinds:
        after = window_start(max(start_ns, sub.start_ns))
        try:
            c = await count_events(
                request.app.state.influx, kind, sub.spec, request.app.state.catalogue,
                devices, after, end_ns, settle_ns, 10**9,
            )  # fmt: skip
            pending = 0
            if cursors[kind] > after:
                after = cursors[kind]
            if after.time_ns < end_ns:
                left = await count_events(
                    request.app.state.influx, kind, sub.spec, request.app.state.catalogue,
                    devices, after, end_ns, settle_ns, 10**9,
                )  # fmt: skip
                pending = left.events
            if kind in NOTED:  # stored late, waiting in the notes (docs/northbound.md)
                pending += await pending_late(
                    request.app.state.influx, sub.spec, sub.start_ns, kind,
                    cursors.get(LATE_STREAM, Cursor(sub.start_ns)), cursors[kind],
                    (start_ns, end_ns),
                )  # fmt: skip
        except SensornetError as exc:
            raise Problem(503, "InfluxDB unavailable", "events cannot be counted") from exc
        settle = WRITE_STAMPED_SETTLE_NS if kind in ("status", "alarms") else settle_ns
        streams[kind] = {
            "expected": c.events,
            "acknowledged": acked.get(kind, 0),
            "pending": pending,
            "settled": pending == 0 and end_ns <= now - settle,
        }
    expected = sum(s["expected"] for s in streams.values())
    acknowledged = sum(s["acknowledged"] for s in streams.values())
    return {
        "subscription": sub.id,
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
        "expected": expected,
        "acknowledged": acknowledged,
        "settled": all(s["settled"] for s in streams.values()),
        "streams": streams,
    }
