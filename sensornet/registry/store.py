"""Registry access: the engine's lifetime, lookups, and the cache the ingester reads."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from sensornet.catalogue import Catalogue
from sensornet.district import District
from sensornet.errors import SensornetError
from sensornet.registry.migrate import migrate
from sensornet.registry.models import REPORTING_STATUSES, Sensor, utcnow

SENSOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistryError(SensornetError):
    """A registry entry is invalid; the message names the sensor and the field."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the data path needs to know of a sensor: its tags and whether it may report."""

    id: str
    type: str
    subdistrict: str
    lat: float
    lon: float
    status: str
    gateway_id: str | None = None

    @property
    def reporting(self) -> bool:
        return self.status in REPORTING_STATUSES


def validate_device(device: DeviceInfo, catalogue: Catalogue, district: District) -> None:
    if not SENSOR_ID.match(device.id):
        raise RegistryError(
            f"sensor id {device.id!r}: use 1-64 of A-Z a-z 0-9 _ . - (it is the MQTT username)"
        )
    catalogue.get(device.type)
    district.get(device.subdistrict)


@asynccontextmanager
async def open_registry(url: str) -> AsyncIterator[AsyncEngine]:
    """Engine for the registry, its schema migrated to the newest revision (Alembic)."""
    engine = create_async_engine(url)
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()


def _info(row: Sensor) -> DeviceInfo:
    return DeviceInfo(
        row.id, row.type, row.subdistrict, row.lat, row.lon, row.status, row.gateway_id
    )


async def upsert_devices(
    engine: AsyncEngine, devices: Iterable[DeviceInfo], actor: str = "system:upsert"
) -> int:
    """Insert or update sensors by id, bypassing the lifecycle (fleet bootstrap, tests);
    every change is audited. Returns how many rows changed."""
    from sensornet.registry.service import audit, snapshot

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    changed = 0
    async with sessions() as session, session.begin():
        existing = {s.id: s for s in (await session.scalars(select(Sensor))).all()}
        for d in devices:
            row = existing.get(d.id)
            if row is None:
                now = utcnow()
                row = Sensor(
                    id=d.id,
                    type=d.type,
                    subdistrict=d.subdistrict,
                    lat=d.lat,
                    lon=d.lon,
                    status=d.status,
                    gateway_id=d.gateway_id,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                audit(session, actor, "register", "sensor", d.id, None, snapshot(row))
                changed += 1
            elif _info(row) != d:
                before = snapshot(row)
                row.type, row.subdistrict, row.lat, row.lon = d.type, d.subdistrict, d.lat, d.lon
                row.status, row.gateway_id = d.status, d.gateway_id
                row.updated_at = utcnow()
                audit(session, actor, "update", "sensor", d.id, before, snapshot(row))
                changed += 1
    return changed


async def load_devices(engine: AsyncEngine) -> dict[str, DeviceInfo]:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        return {s.id: _info(s) for s in (await session.scalars(select(Sensor))).all()}


async def get_device(engine: AsyncEngine, sensor_id: str) -> DeviceInfo | None:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        row = await session.get(Sensor, sensor_id)
        return None if row is None else _info(row)


class DeviceCache:
    """The ingester's view of the registry, reloaded at most every ``ttl_s`` seconds.

    A short TTL rather than change notification: it works the same on SQLite and
    PostgreSQL, and a new sensor is visible within ``ttl_s`` (docs/registry.md).
    """

    def __init__(self, engine: AsyncEngine, ttl_s: float = 2.0) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._devices: dict[str, DeviceInfo] = {}
        self._loaded_at = float("-inf")
        self.version = 0  # changes exactly when the devices do: readers may cache by it

    async def refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._loaded_at >= self._ttl_s:
            devices = await load_devices(self._engine)
            if devices != self._devices:
                self._devices = devices
                self.version += 1
            self._loaded_at = time.monotonic()

    def get(self, sensor_id: str) -> DeviceInfo | None:
        return self._devices.get(sensor_id)

    def __len__(self) -> int:
        return len(self._devices)
