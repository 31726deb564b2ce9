"""Alarm state and history in the registry's SQL database: one row per alarm episode
(raised → possibly changed level → cleared), acknowledgement on the row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class AlarmBase(DeclarativeBase):
    """Separate metadata: alarms live beside the registry but are not registry tables."""


class Alarm(AlarmBase):
    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sensor_id: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    subdistrict: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)
    level_name: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float] = mapped_column(Float)
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    note: Mapped[str | None] = mapped_column(String(1000), nullable=True)

    __table_args__ = (
        Index("ix_alarms_active", "cleared_at", "sensor_id"),
        Index("ix_alarms_raised", "raised_at"),
    )


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    id: int
    sensor_id: str
    rule_id: str
    type: str
    subdistrict: str
    quantity: str
    level: int
    level_name: str
    severity: str
    threshold: float | None
    value: float
    raised_at: datetime
    changed_at: datetime
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None

    @property
    def active(self) -> bool:
        return self.cleared_at is None


def _record(row: Alarm) -> AlarmRecord:
    def utc(at: datetime | None) -> datetime | None:
        # SQLite returns naive datetimes: they were written in UTC
        return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)

    return AlarmRecord(
        row.id, row.sensor_id, row.rule_id, row.type, row.subdistrict, row.quantity,
        row.level, row.level_name, row.severity, row.threshold, row.value,
        utc(row.raised_at) or row.raised_at, utc(row.changed_at) or row.changed_at,
        utc(row.cleared_at), utc(row.acknowledged_at), row.acknowledged_by, row.note,
    )  # fmt: skip


async def create_alarm_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(AlarmBase.metadata.create_all)


@dataclass(frozen=True, slots=True)
class Change:
    """What the runner decided for one sensor and rule; ``level`` None clears."""

    sensor_id: str
    rule_id: str
    type: str
    subdistrict: str
    quantity: str
    level: int | None
    level_name: str
    severity: str
    threshold: float | None
    value: float
    at: datetime


async def apply_changes(engine: AsyncEngine, changes: list[Change]) -> None:
    """Open, update or close episodes in one transaction."""
    if not changes:
        return
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        keys = {(c.sensor_id, c.rule_id) for c in changes}
        active = {
            (a.sensor_id, a.rule_id): a
            for a in (await session.scalars(select(Alarm).where(Alarm.cleared_at.is_(None)))).all()
            if (a.sensor_id, a.rule_id) in keys
        }
        for c in changes:
            row = active.get((c.sensor_id, c.rule_id))
            if c.level is None:
                if row is not None:
                    row.cleared_at, row.changed_at, row.value = c.at, c.at, c.value
                continue
            if row is None:
                row = Alarm(
                    sensor_id=c.sensor_id, rule_id=c.rule_id, type=c.type,
                    subdistrict=c.subdistrict, quantity=c.quantity, raised_at=c.at,
                )  # fmt: skip
                session.add(row)
                active[(c.sensor_id, c.rule_id)] = row
            elif c.level > row.level:
                # a worse level needs a fresh acknowledgement
                row.acknowledged_at = row.acknowledged_by = None
            row.level, row.level_name, row.severity = c.level, c.level_name, c.severity
            row.threshold, row.value, row.changed_at = c.threshold, c.value, c.at


async def active_alarms(engine: AsyncEngine) -> list[AlarmRecord]:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        q = select(Alarm).where(Alarm.cleared_at.is_(None)).order_by(Alarm.raised_at.desc())
        return [_record(a) for a in (await session.scalars(q)).all()]


async def alarm_history(
    engine: AsyncEngine, since: datetime | None, before_id: int | None, limit: int
) -> list[AlarmRecord]:
    """Episodes newest first, paged by id."""
    sessions = async_sessionmaker(engine)
    q = select(Alarm).order_by(Alarm.id.desc()).limit(limit)
    if since is not None:
        q = q.where(Alarm.raised_at >= since)
    if before_id is not None:
        q = q.where(Alarm.id < before_id)
    async with sessions() as session:
        return [_record(a) for a in (await session.scalars(q)).all()]


async def acknowledge(
    engine: AsyncEngine, alarm_id: int, by: str, note: str | None
) -> AlarmRecord | None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        row = await session.get(Alarm, alarm_id)
        if row is None:
            return None
        row.acknowledged_at, row.acknowledged_by, row.note = datetime.now(UTC), by, note
        return _record(row)


async def unacknowledge(engine: AsyncEngine, alarm_id: int) -> AlarmRecord | None:
    """Take an acknowledgement back: the alarm notifies again (its silence is expired)."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        row = await session.get(Alarm, alarm_id)
        if row is None:
            return None
        row.acknowledged_at = row.acknowledged_by = row.note = None
        return _record(row)
