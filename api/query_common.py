"""What the query routers share: the registry view, latest values per sensor, units,
cursors and HTTP caching. Reads only; every InfluxQL value is a bound parameter."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from api.problems import Problem
from sensornet.catalogue import Catalogue, SensorType
from sensornet.influx import InfluxClient, check_identifier, rows
from sensornet.registry.store import DeviceInfo, load_devices

#: How far back "latest" looks. Older readings would need a scan of all raw data; a sensor
#: not heard for a day is offline whatever its interval (liveness: 6 intervals at most).
LATEST_LOOKBACK_S = 86_400


class RegistryView:
    """The registry's sensors, reloaded at most every ``ttl_s`` (like the ingester's cache),
    so a query endpoint does not read SQL on every request."""

    def __init__(self, engine: AsyncEngine, ttl_s: float = 2.0) -> None:
        self._engine, self._ttl_s = engine, ttl_s
        self._devices: dict[str, DeviceInfo] = {}
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def devices(self) -> Mapping[str, DeviceInfo]:
        if time.monotonic() - self._at >= self._ttl_s:
            async with self._lock:
                if time.monotonic() - self._at >= self._ttl_s:
                    self._devices = await load_devices(self._engine)
                    self._at = time.monotonic()
        return self._devices


def registry_view(request: Request) -> RegistryView:
    view: RegistryView | None = getattr(request.app.state, "registry_view", None)
    if view is None:
        view = RegistryView(request.app.state.registry)
        request.app.state.registry_view = view
    return view


async def device_or_404(request: Request, sensor_id: str) -> DeviceInfo:
    device = (await registry_view(request).devices()).get(sensor_id)
    if device is None:
        raise Problem(404, "Unknown sensor", f"no sensor {sensor_id!r} in the registry")
    return device


@dataclass(frozen=True, slots=True)
class Latest:
    time_ns: int
    values: dict[str, Any]


def latest_query(sensor_type: SensorType, n_ids: int, subdistrict: bool) -> str:
    """Last row per sensor of one type; ``$s0..`` restrict to a page of sensors."""
    m = check_identifier(sensor_type.measurement)
    where = ["time > $since"]
    if subdistrict:
        where.append('"subdistrict" = $subdistrict')
    if n_ids:
        where.append("(" + " OR ".join(f'"sensor_id" = $s{i}' for i in range(n_ids)) + ")")
    return (
        f'SELECT * FROM "{m}" WHERE {" AND ".join(where)} '  # noqa: S608
        'GROUP BY "sensor_id" ORDER BY time DESC LIMIT 1'
    )


def latest_params(
    ids: Sequence[str], subdistrict: str | None, now_ns: int | None = None
) -> dict[str, str | int | float | bool]:
    now_ns = now_ns or time.time_ns()
    since = datetime.fromtimestamp((now_ns / 1e9) - LATEST_LOOKBACK_S, UTC).isoformat()
    params: dict[str, str | int | float | bool] = {"since": since}
    if subdistrict:
        params["subdistrict"] = subdistrict
    params.update({f"s{i}": s for i, s in enumerate(ids)})
    return params


async def latest_of_type(
    influx: InfluxClient,
    sensor_type: SensorType,
    ids: Sequence[str] = (),
    subdistrict: str | None = None,
) -> dict[str, Latest]:
    """Latest reading of each sensor of one type (all of them when ``ids`` is empty)."""
    q = latest_query(sensor_type, len(ids), subdistrict is not None)
    series = await influx.query(q, latest_params(ids, subdistrict))
    fields = sensor_type.quantities
    out: dict[str, Latest] = {}
    for row in rows(series):
        values = {k: v for k, v in row.items() if k in fields and v is not None}
        out[row["sensor_id"]] = Latest(int(row["time"]), values)
    return out


async def latest_of_types(
    influx: InfluxClient, catalogue: Catalogue, type_ids: Sequence[str]
) -> dict[str, Latest]:
    """Latest reading of every sensor of several types, queried concurrently."""
    found = await asyncio.gather(*(latest_of_type(influx, catalogue.get(t)) for t in type_ids))
    out: dict[str, Latest] = {}
    for part in found:
        out.update(part)
    return out


def units(catalogue: Catalogue, type_id: str) -> dict[str, str]:
    return {q.id: q.unit for q in catalogue.get(type_id).quantities.values()}


def with_units(values: Mapping[str, Any], unit_of: Mapping[str, str]) -> dict[str, Any]:
    return {k: {"value": v, "unit": unit_of.get(k, "")} for k, v in values.items()}


def iso(ns: int) -> str:
    at = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)
    return at.isoformat().replace("+00:00", "Z")


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "Invalid cursor", "pass next_cursor from a previous page") from None


def cached_json(request: Request, body: Any, max_age_s: int) -> Response:
    """JSON with a strong ETag of its bytes and Cache-Control; ``If-None-Match`` → 304.

    ``private``: the data endpoints will need credentials, so shared caches must not
    keep them."""
    content = orjson.dumps(body)
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={max_age_s}"}
    match = request.headers.get("if-none-match", "")
    if etag in {t.strip() for t in match.split(",")} or match.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/json", headers=headers)
