"""Per-device accounting: what the platform received, stored, rejected and missed."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from api.problems import Problem
from sensornet.accounting import device_account, device_liveness
from sensornet.registry.store import get_device

router = APIRouter(tags=["accounting"])


@router.get("/devices/{sensor_id}/accounting")
async def accounting(request: Request, sensor_id: str) -> dict[str, Any]:
    """Received = stored + rejected; missing = gaps in the device's ``seq``; liveness from
    the last reading against the type's interval, or the device's Last Will."""
    device = await get_device(request.app.state.registry, sensor_id)
    if device is None:
        raise Problem(404, "Unknown sensor", f"no sensor {sensor_id!r} in the registry")
    influx = request.app.state.influx
    account = await device_account(influx, sensor_id, device.type)
    interval = request.app.state.catalogue.get(device.type).interval_s
    alive = await device_liveness(influx, sensor_id, device.type, interval, time.time_ns())
    return {
        **account.as_dict(),
        "last_seen_ns": alive.last_seen_ns,
        "status": alive.status,
        "liveness": alive.liveness,
    }
