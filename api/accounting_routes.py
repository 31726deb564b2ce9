"""Per-device accounting: what the platform received, stored, rejected and missed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.problems import Problem
from sensornet.accounting import device_account
from sensornet.registry.store import get_device

router = APIRouter(tags=["accounting"])


@router.get("/devices/{sensor_id}/accounting")
async def accounting(request: Request, sensor_id: str) -> dict[str, Any]:
    """Received = stored + rejected; missing = gaps in the device's ``seq``."""
    device = await get_device(request.app.state.registry, sensor_id)
    if device is None:
        raise Problem(404, "Unknown sensor", f"no sensor {sensor_id!r} in the registry")
    account = await device_account(request.app.state.influx, sensor_id, device.type)
    return account.as_dict()
