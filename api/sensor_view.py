"""The field engineer's view of one sensor in one call: registry entry, credentials,
last seen, liveness, last readings and rejects by reason (for a phone page or a panel)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.auth import Viewer
from api.problems import Problem
from sensornet import broker_auth
from sensornet.catalogue import Catalogue
from sensornet.district import load_district
from sensornet.influx import InfluxClient, check_identifier, rows
from sensornet.liveness import Liveness, liveness
from sensornet.registry.schemas import SensorOut
from sensornet.registry.service import Registry, SensorNotFound

router = APIRouter(tags=["registry"])
DEAD_LETTER = "dead_letter"
DEVICE_STATUS = "device_status"


class CredentialsView(BaseModel):
    issued: bool
    issued_at: str | None
    broker_access: bool


class LastReading(BaseModel):
    time: datetime
    values: dict[str, float | int | bool | str]


class SensorView(BaseModel):
    sensor: SensorOut
    credentials: CredentialsView
    last_seen: datetime | None
    liveness: Liveness
    reported_state: str | None
    interval_s: float
    last_readings: list[LastReading]
    rejects_window_h: int
    rejects: dict[str, int]


def _at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)


def last_readings_query(measurement: str) -> str:
    m = check_identifier(measurement)
    return f'SELECT * FROM "{m}" WHERE "sensor_id" = $sensor_id ORDER BY time DESC LIMIT $n'  # noqa: S608


STATUS_QUERY = (
    f'SELECT "state" FROM "{DEVICE_STATUS}" WHERE "sensor_id" = $sensor_id '  # noqa: S608
    "ORDER BY time DESC LIMIT 1"
)
REJECTS_QUERY = (
    f'SELECT count("payload_bytes") FROM "{DEAD_LETTER}" '  # noqa: S608
    'WHERE "device" = $sensor_id AND time >= $since GROUP BY "reason"'
)


@router.get("/sensors/{sensor_id}/view", response_model=SensorView)
async def sensor_view(
    request: Request,
    who: Viewer,
    sensor_id: str,
    readings: Annotated[int, Query(ge=0, le=100, description="Last readings to include")] = 5,
    rejects_window_h: Annotated[int, Query(ge=1, le=24 * 366)] = 24,
) -> SensorView:
    engine = request.app.state.registry
    catalogue: Catalogue = request.app.state.catalogue
    influx: InfluxClient = request.app.state.influx
    try:
        sensor = await Registry(engine, catalogue, load_district()).get(sensor_id)
    except SensorNotFound as exc:
        raise Problem(404, "Unknown sensor", str(exc)) from exc
    sensor_type = catalogue.get(sensor.type)
    params: dict[str, Any] = {"sensor_id": sensor_id, "n": max(readings, 1)}
    found = rows(await influx.query(last_readings_query(sensor_type.measurement), params))
    status = rows(await influx.query(STATUS_QUERY, {"sensor_id": sensor_id}))
    now_ns = time.time_ns()
    since = datetime.fromtimestamp(now_ns / 1e9 - rejects_window_h * 3600, UTC).isoformat()
    rejects = await influx.query(REJECTS_QUERY, {"sensor_id": sensor_id, "since": since})

    last_ns = int(found[0]["time"]) if found else None
    state = str(status[0]["state"]) if status else None
    said_offline = bool(
        status and state == "offline" and (last_ns is None or int(status[0]["time"]) >= last_ns)
    )
    counts = {str(r["reason"]): int(r["count"]) for r in rows(rejects)}
    quantities = sensor_type.quantities
    last = [
        LastReading(
            time=_at(int(r["time"])),
            values={k: v for k, v in r.items() if k in quantities and v is not None},
        )
        for r in found[:readings]
    ]
    creds = await broker_auth.credential_status(engine, sensor_id)
    return SensorView(
        sensor=sensor,
        credentials=CredentialsView(
            issued=creds.issued, issued_at=creds.issued_at, broker_access=creds.broker_access
        ),
        last_seen=_at(last_ns) if last_ns is not None else None,
        liveness=liveness(last_ns, sensor_type.interval_s, now_ns, said_offline),
        reported_state=state,
        interval_s=sensor_type.interval_s,
        last_readings=last,
        rejects_window_h=rejects_window_h,
        rejects=counts,
    )
