"""FastAPI application. Resources live in the lifespan and reach handlers via
``request.app.state``; nothing is global."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api import (
    accounting_routes,
    alarm_routes,
    docs_pages,
    health_routes,
    latest_routes,
    maintenance_routes,
    northbound_routes,
    opendata_routes,
    problems,
    queries,
    range_routes,
    registry_routes,
    responses,
)
from api.auth import require
from api.body_guard import BodyGuard
from api.fast import FastRoutes
from api.key_cache import KeyCache
from api.metrics import ApiMetrics, MetricsMiddleware
from api.problems import Problem
from api.request_ids import RequestIds
from api.time_range import DAY, End, StartRequired, checked_range
from sensornet.catalogue import Catalogue, load_catalogue
from sensornet.client_address import trusted_networks
from sensornet.influx import InfluxClient, influx_client, rows
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceInfo, get_device, open_registry
from sensornet.settings import Settings

log = logging.getLogger("sensornet.api")

MAX_RANGE_ROWS = 10_000


class QuantityValue(BaseModel):
    value: float | int | bool | str | None
    unit: str


class Reading(BaseModel):
    time: datetime
    values: dict[str, QuantityValue]


class SensorReadings(BaseModel):
    sensor_id: str
    type: str
    subdistrict: str
    readings: list[Reading]


class Health(BaseModel):
    """``status`` is "ok" only when every dependency answers; otherwise the answer is a
    503 whose ``down`` names them, so a load balancer or watchdog sees the truth."""

    status: str
    broker: bool
    influxdb: bool
    registry: bool
    down: list[str]


def create_app(settings: Settings | None = None, *, fast_routes: bool = True) -> FastAPI:
    """``fast_routes=False`` leaves every request to FastAPI (tests compare the two); with
    it, ``api.fast`` is the innermost middleware, so any added later wraps it."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            influx_client(settings, read_only=True) as influx,
            open_registry(settings.registry_database_url) as registry,
        ):
            app.state.influx = influx
            app.state.registry = registry
            app.state.key_cache = keys = KeyCache(
                registry, settings.api_key_cache_s, settings.api_key_refused_cache_s
            )
            app.state.catalogue = load_catalogue()
            try:
                async with keys.record_uses(settings.api_key_last_used_s):
                    yield
            finally:
                opendata_routes.close_limiter(app)

    app = FastAPI(
        title="Sensornet city sensor API",
        version="0.1.0",
        description="Readings, sensors and platform health of the city perception network.",
        lifespan=lifespan,
        docs_url=None,  # api.docs_pages serves them with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.trusted_proxies = trusted_networks(settings.api_trusted_proxies)
    if fast_routes:
        app.add_middleware(FastRoutes, api=app)
    app.add_middleware(BodyGuard, api=app)  # authenticate, then read at most the cap
    metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outside: fast routes measured
    # for Prometheus, without a key like /health: counts and latencies, no readings
    app.add_api_route("/metrics", metrics.render, include_in_schema=False)
    app.add_middleware(RequestIds)  # outermost: every log line of a request carries its id
    problems.install(app)
    docs_pages.install(app)
    viewer = [Depends(require("viewer"))]
    app.include_router(registry_routes.router)
    app.include_router(accounting_routes.router, dependencies=viewer)
    app.include_router(latest_routes.router, dependencies=viewer)
    app.include_router(range_routes.router, dependencies=viewer)
    app.include_router(health_routes.router, dependencies=viewer)
    app.include_router(alarm_routes.router, dependencies=viewer)
    app.include_router(maintenance_routes.router, dependencies=viewer)
    app.include_router(northbound_routes.router)  # roles per route: admin, engineer
    app.include_router(opendata_routes.router)  # anonymous, rate-limited, aggregates only

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "a dependency is down"}},
    )
    async def health(request: Request) -> Any:
        influx: InfluxClient = request.app.state.influx
        broker, influx_ok, registry_ok = await asyncio.gather(
            _broker_reachable(
                settings.mqtt_host, settings.mqtt_port, MqttTls.from_settings(settings)
            ),
            influx.ping(),
            _registry_reachable(request.app.state.registry),
        )
        checks = {"broker": broker, "influxdb": influx_ok, "registry": registry_ok}
        down = [name for name, ok in checks.items() if not ok]
        body = Health(status="down" if down else "ok", down=down, **checks)
        if down:
            return JSONResponse(body.model_dump(), status_code=503)
        return body

    @app.get("/sensors/{sensor_id}/latest", response_model=SensorReadings, dependencies=viewer)
    async def latest(request: Request, sensor_id: str) -> SensorReadings:
        device = await _device(request, sensor_id)
        series = await request.app.state.influx.query(
            queries.sensor_latest(device.type), {"sensor_id": sensor_id}
        )
        return _readings(request.app.state.catalogue, device, rows(series))

    @app.get("/sensors/{sensor_id}/readings", response_model=SensorReadings, dependencies=viewer)
    async def readings(
        request: Request,
        sensor_id: str,
        start: StartRequired,
        end: End = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RANGE_ROWS)] = 1000,
    ) -> SensorReadings:
        device = await _device(request, sensor_id)
        start, end = checked_range(start, end, datetime.now(UTC), DAY)
        params = {
            "sensor_id": sensor_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "limit": limit,
        }
        series = await request.app.state.influx.query(queries.sensor_range(device.type), params)
        return _readings(request.app.state.catalogue, device, rows(series))

    responses.declare(app)  # last: every route's problem answers in the OpenAPI document
    return app


async def _registry_reachable(engine: AsyncEngine) -> bool:
    """The registry database answers a trivial query within a second."""
    try:
        async with asyncio.timeout(1.0), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver's failure means the same: not reachable
        log.warning("health: registry unreachable: %r", exc)
        return False
    return True


async def _broker_reachable(host: str, port: int, tls: MqttTls | None) -> bool:
    """The broker accepts a connection (and, with TLS, passes verification as our own
    clients would check it: a certificate they would refuse is no healthy broker)."""
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(
                host, port, ssl=tls.context() if tls else None
            )
    except ssl.SSLError as exc:
        if tls is not None:
            log.warning("health: %s", tls.failure(exc, host, port))
        return False
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _device(request: Request, sensor_id: str) -> DeviceInfo:
    device = await get_device(request.app.state.registry, sensor_id)
    if device is None:
        raise Problem(404, "Unknown sensor", f"no sensor {sensor_id!r} in the registry")
    return device


def _readings(
    catalogue: Catalogue, device: DeviceInfo, found: list[dict[str, Any]]
) -> SensorReadings:
    quantities = catalogue.get(device.type).quantities
    out = []
    for row in found:
        values = {
            k: QuantityValue(value=v, unit=quantities[k].unit)
            for k, v in row.items()
            if k in quantities and v is not None
        }
        ns = int(row["time"])
        at = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)
        out.append(Reading(time=at, values=values))
    return SensorReadings(
        sensor_id=device.id, type=device.type, subdistrict=device.subdistrict, readings=out
    )
