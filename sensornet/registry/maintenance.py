"""Maintenance windows in the registry: a sensor or a whole subdistrict whose alarms notify
nobody between two instants. The alarm runner turns current and future windows into
Alertmanager silences (alarms/notify.py); alarms are still evaluated and recorded.

Shared by the API, the CLI and the runner, so it lives in the core like the rest of the
registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sensornet.errors import SensornetError
from sensornet.registry.models import MaintenanceWindow, Sensor

#: a window longer than this is a mistake (a forgotten sensor should be retired instead)
MAX_WINDOW = timedelta(days=90)


class InvalidMaintenance(SensornetError):
    """A window that cannot be kept: the message says what to change."""


class MaintenanceNotFound(SensornetError):
    """No maintenance window with that id."""


@dataclass(frozen=True, slots=True)
class Window:
    id: int
    sensor_id: str | None
    subdistrict: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str

    def active_at(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def covers(self, sensor_id: str, subdistrict: str) -> bool:
        return self.sensor_id == sensor_id or self.subdistrict == subdistrict


def _window(row: MaintenanceWindow) -> Window:
    return Window(
        row.id, row.sensor_id, row.subdistrict, row.starts_at, row.ends_at, row.reason,
        row.created_by,
    )  # fmt: skip


def check_window(
    sensor_id: str | None,
    subdistrict: str | None,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> None:
    """Pure checks of a new window; raises ``InvalidMaintenance``."""
    if (sensor_id is None) == (subdistrict is None):
        raise InvalidMaintenance("give either a sensor or a subdistrict, not both or neither")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidMaintenance("times need an offset, e.g. 2026-12-07T09:00:00+08:00")
    if ends_at <= starts_at:
        raise InvalidMaintenance("the window ends before it starts")
    if ends_at <= now:
        raise InvalidMaintenance("the window is already over")
    if ends_at - starts_at > MAX_WINDOW:
        raise InvalidMaintenance(
            f"a window is at most {MAX_WINDOW.days} days; retire a sensor that is gone"
        )


async def add_window(
    engine: AsyncEngine,
    *,
    sensor_id: str | None = None,
    subdistrict: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime,
    reason: str = "",
    by: str,
    known_subdistricts: frozenset[str] | None = None,
) -> Window:
    """A new window (from now if ``starts_at`` is None), for a registered sensor or a
    known subdistrict."""
    now = datetime.now(UTC)
    starts_at = starts_at or now
    check_window(sensor_id, subdistrict, starts_at, ends_at, now)
    if (
        subdistrict is not None
        and known_subdistricts is not None
        and subdistrict not in known_subdistricts
    ):
        raise InvalidMaintenance(
            f"unknown subdistrict {subdistrict!r}; known: {', '.join(sorted(known_subdistricts))}"
        )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        if sensor_id is not None and await session.get(Sensor, sensor_id) is None:
            raise InvalidMaintenance(f"no sensor {sensor_id!r} in the registry")
        row = MaintenanceWindow(
            sensor_id=sensor_id, subdistrict=subdistrict, starts_at=starts_at, ends_at=ends_at,
            reason=reason[:1000], created_by=by[:128], created_at=now,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        return _window(row)


async def current_windows(engine: AsyncEngine, at: datetime | None = None) -> list[Window]:
    """Windows not over at ``at`` (now): running and future ones, soonest first."""
    at = at or datetime.now(UTC)
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        q = (
            select(MaintenanceWindow)
            .where(MaintenanceWindow.ends_at > at)
            .order_by(MaintenanceWindow.starts_at, MaintenanceWindow.id)
        )
        return [_window(r) for r in (await session.scalars(q)).all()]


async def windows_for(
    engine: AsyncEngine, sensor_id: str | None = None, subdistrict: str | None = None
) -> list[Window]:
    """Every window (past ones too) of a sensor or subdistrict, newest first."""
    sessions = async_sessionmaker(engine)
    q = select(MaintenanceWindow).order_by(MaintenanceWindow.id.desc()).limit(1000)
    conditions = []
    if sensor_id is not None:
        conditions.append(MaintenanceWindow.sensor_id == sensor_id)
    if subdistrict is not None:
        conditions.append(MaintenanceWindow.subdistrict == subdistrict)
    if conditions:
        q = q.where(or_(*conditions))
    async with sessions() as session:
        return [_window(r) for r in (await session.scalars(q)).all()]


async def end_window(engine: AsyncEngine, window_id: int) -> Window:
    """End a window now (a future one is cut to nothing); its silence is expired by the
    runner's next round."""
    now = datetime.now(UTC)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        row = await session.get(MaintenanceWindow, window_id)
        if row is None:
            raise MaintenanceNotFound(f"no maintenance window {window_id}")
        if row.ends_at > now:
            row.ends_at = max(now, row.starts_at)
            if row.starts_at > now:
                row.starts_at = row.ends_at = now
        return _window(row)
