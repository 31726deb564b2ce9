"""Per-device accounting: what the platform received, stored, rejected and missed in a
time window, whether that answer can still change, and the device's liveness."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from api.problems import Problem
from api.time_range import End, Start, checked_range
from sensornet.accounting import (
    Window,
    device_account,
    device_liveness,
    settle_margin_ns,
    spool_backlog,
    unknown_keys_of,
)
from sensornet.catalogue import Catalogue
from sensornet.registry.store import get_device
from sensornet.settings import Settings

router = APIRouter(tags=["accounting"])

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=7)


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 10**9 + at.microsecond * 1000


def _rfc3339(ns: int) -> str:
    at = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)
    return at.isoformat().replace("+00:00", "Z")


def _window(start: datetime | None, end: datetime | None, now: datetime) -> Window:
    start, end = checked_range(start, end, now, DEFAULT_WINDOW, MAX_WINDOW)
    return Window(_ns(start), _ns(end))


@router.get("/devices/{sensor_id}/accounting")
async def accounting(
    request: Request,
    sensor_id: str,
    start: Start = None,
    end: End = None,
) -> dict[str, Any]:
    """Received = stored + rejected; missing = gaps in the device's ``seq`` per epoch
    (docs/accounting.md); ``settling`` while the ingester may still write into the window;
    liveness from the last reading against the type's interval, or the device's Last Will."""
    now_ns = time.time_ns()
    window = _window(start, end, datetime.fromtimestamp(now_ns / 1e9, UTC))
    device = await get_device(request.app.state.registry, sensor_id)
    if device is None:
        raise Problem(404, "Unknown sensor", f"no sensor {sensor_id!r} in the registry")
    settings: Settings = request.app.state.settings
    catalogue: Catalogue = request.app.state.catalogue
    sensor_type = catalogue.get(device.type)
    influx = request.app.state.influx
    account = await device_account(
        influx,
        sensor_id,
        device.type,
        window,
        fields=list(sensor_type.quantities),
        max_rows=settings.accounting_max_rows,
    )
    counted = account.window
    margin = settle_margin_ns(settings)
    recent = counted.end_ns > now_ns - margin
    backlog = await spool_backlog(influx)
    reasons = (["window_end_recent"] if recent else []) + (["spool_backlog"] if backlog else [])
    alive = await device_liveness(
        influx, sensor_id, device.type, sensor_type.interval_s, time.time_ns()
    )
    return {
        **account.as_dict(),
        "start": _rfc3339(counted.start_ns),
        "end": _rfc3339(counted.end_ns),
        "start_ns": counted.start_ns,
        "end_ns": counted.end_ns,
        "max_rows": settings.accounting_max_rows,
        "settling": bool(reasons),
        "settling_reasons": reasons,
        "settles_at": _rfc3339(counted.end_ns + margin)
        if reasons == ["window_end_recent"]
        else None,
        "spool_backlog": backlog,
        # readings stored without keys their type does not know (docs/payloads.md)
        "unknown_keys": await unknown_keys_of(influx, sensor_id, counted),
        "last_seen_ns": alive.last_seen_ns,
        "status": alive.status,
        "liveness": alive.liveness,
    }
