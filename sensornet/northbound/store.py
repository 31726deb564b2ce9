"""Subscriptions, their cursors and delivery counts in the registry database.

A cursor per (subscription, stream) is the durable outbox (``sources``): it moves in the
same transaction that counts the events the receiver acknowledged, per minute of event
time, so the accounting (``acked``) can never disagree with what the cursor says was
delivered, whatever moment a crash picks."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, String, Text, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from sensornet.northbound.events import Cursor, rfc3339_ns
from sensornet.northbound.spec import Filter, Spec
from sensornet.registry.models import Base, UTCDateTime, utcnow
from sensornet.registry.service import audit

ACTIVE, PAUSED = "active", "paused"
AUDIT_ENTITY = "northbound_subscription"
#: Who pauses a subscription whose receiver kept failing (the audit log's actor).
PUSHER_ACTOR = "northbound-pusher"


class SubscriptionRow(Base):
    __tablename__ = "northbound_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    #: Fernet token of the signing secret (sensornet.northbound.secretbox), never returned
    secret_sealed: Mapped[str] = mapped_column(Text)
    kinds: Mapped[list[str]] = mapped_column(JSON)
    filter: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    resolution: Mapped[str | None] = mapped_column(String(8), default=None)
    state: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    pause_reason: Mapped[str | None] = mapped_column(Text, default=None)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    #: Events timed from then on are the subscription's (its cursors started there)
    start_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_delivery_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class CursorRow(Base):
    __tablename__ = "northbound_cursors"

    subscription_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    time_ns: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(256))


class AckRow(Base):
    __tablename__ = "northbound_acks"

    subscription_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    spec: Spec
    secret_sealed: str
    state: str
    pause_reason: str | None
    paused_at: datetime | None
    created_at: datetime
    created_by: str
    start_ns: int
    delivered: int
    failed_attempts: int
    failing_since: datetime | None
    last_error: str | None
    last_delivery_at: datetime | None

    def public(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {
            "id": self.id,
            "name": self.spec.name,
            "url": self.spec.url,
            "kinds": list(self.spec.kinds),
            "filter": self.spec.filter.as_dict(),
            "resolution": self.spec.resolution,
            "state": self.state,
            "pause_reason": self.pause_reason,
            "paused_at": self.paused_at,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "start": rfc3339_ns(self.start_ns),
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "failing_since": self.failing_since,
            "last_error": self.last_error,
            "last_delivery_at": self.last_delivery_at,
        }


def _spec(row: SubscriptionRow) -> Spec:
    f = row.filter
    return Spec(
        row.name,
        row.url,
        tuple(row.kinds),  # type: ignore[arg-type]  # checked when registered
        Filter(
            tuple(f.get("types", ())), tuple(f.get("subdistricts", ())), tuple(f.get("sensors", ()))
        ),
        row.resolution,
    )


def _record(row: SubscriptionRow) -> Subscription:
    return Subscription(
        row.id, _spec(row), row.secret_sealed, row.state, row.pause_reason, row.paused_at,
        row.created_at, row.created_by, row.start_ns, row.delivered, row.failed_attempts,
        row.failing_since, row.last_error, row.last_delivery_at,
    )  # fmt: skip


def _sessions(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_subscription(
    engine: AsyncEngine, spec: Spec, secret_sealed: str, created_by: str, start_ns: int
) -> Subscription:
    """Stored with a cursor per stream at ``start_ns``: events from then on are delivered."""
    row = SubscriptionRow(
        id="nb_" + secrets.token_hex(8),
        name=spec.name,
        url=spec.url,
        secret_sealed=secret_sealed,
        kinds=list(spec.kinds),
        filter=spec.filter.as_dict(),
        resolution=spec.resolution,
        state=ACTIVE,
        created_by=created_by,
        start_ns=start_ns,
        delivered=0,
        failed_attempts=0,
    )
    async with _sessions(engine)() as session, session.begin():
        session.add(row)
        for kind in spec.kinds:
            session.add(CursorRow(subscription_id=row.id, stream=kind, time_ns=start_ns, key=""))
        audit(session, created_by, "create", AUDIT_ENTITY, row.id, None, _audited(row))
    return _record(row)


async def list_subscriptions(engine: AsyncEngine) -> list[Subscription]:
    async with _sessions(engine)() as session:
        q = select(SubscriptionRow).order_by(SubscriptionRow.created_at)
        return [_record(r) for r in (await session.scalars(q)).all()]


async def earliest_starts(engine: AsyncEngine) -> dict[str, int]:
    """Per kind, the earliest ``start`` among the subscriptions that take it, paused ones
    included (they resume where they stopped): what the ingester's late notes must cover
    (sensornet.northbound.late). Kinds nobody takes are absent."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(SubscriptionRow.kinds, SubscriptionRow.start_ns))
        out: dict[str, int] = {}
        for kinds, start_ns in rows:
            for kind in kinds:
                out[kind] = min(out.get(kind, start_ns), start_ns)
        return out


async def get_subscription(engine: AsyncEngine, subscription_id: str) -> Subscription | None:
    async with _sessions(engine)() as session:
        row = await session.get(SubscriptionRow, subscription_id)
        return None if row is None else _record(row)


async def delete_subscription(engine: AsyncEngine, subscription_id: str, actor: str) -> bool:
    async with _sessions(engine)() as session, session.begin():
        row = await session.get(SubscriptionRow, subscription_id)
        if row is not None:
            audit(session, actor, "delete", AUDIT_ENTITY, row.id, _audited(row), None)
        for table in (AckRow, CursorRow):
            await session.execute(delete(table).where(table.subscription_id == subscription_id))
        result = await session.execute(
            delete(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
        )
        return bool(result.rowcount)


async def pause(
    engine: AsyncEngine, subscription_id: str, reason: str, actor: str
) -> Subscription | None:
    return await _set_state(
        engine, subscription_id, actor, "pause",
        state=PAUSED, pause_reason=reason, paused_at=utcnow(),
    )  # fmt: skip


async def resume(engine: AsyncEngine, subscription_id: str, actor: str) -> Subscription | None:
    """Active again, with a fresh failure streak (the pause clock starts over)."""
    return await _set_state(
        engine, subscription_id, actor, "resume",
        state=ACTIVE, pause_reason=None, paused_at=None, failing_since=None,
    )  # fmt: skip


async def _set_state(
    engine: AsyncEngine, subscription_id: str, actor: str, action: str, **values: Any
) -> Subscription | None:
    async with _sessions(engine)() as session, session.begin():
        before = await session.get(SubscriptionRow, subscription_id)
        if before is None:
            return None
        was = _audited(before)
        await session.execute(
            update(SubscriptionRow).where(SubscriptionRow.id == subscription_id).values(**values)
        )
        row = await session.get(SubscriptionRow, subscription_id, populate_existing=True)
        if row is None:
            return None
        audit(session, actor, action, AUDIT_ENTITY, row.id, was, _audited(row))
        return _record(row)


def _audited(row: SubscriptionRow) -> dict[str, Any]:
    """What the audit log keeps of a subscription: never its secret."""
    return {
        "name": row.name,
        "url": row.url,
        "kinds": list(row.kinds),
        "filter": dict(row.filter),
        "resolution": row.resolution,
        "state": row.state,
        "pause_reason": row.pause_reason,
    }


async def set_url(engine: AsyncEngine, subscription_id: str, url: str) -> None:
    """The endpoint moved (the receiver's own operators say so; checked by the caller)."""
    async with _sessions(engine)() as session, session.begin():
        await session.execute(
            update(SubscriptionRow).where(SubscriptionRow.id == subscription_id).values(url=url)
        )


async def cursors(engine: AsyncEngine, subscription_id: str) -> dict[str, Cursor]:
    async with _sessions(engine)() as session:
        q = select(CursorRow).where(CursorRow.subscription_id == subscription_id)
        return {r.stream: Cursor(r.time_ns, r.key) for r in (await session.scalars(q)).all()}


async def record_delivery(
    engine: AsyncEngine,
    subscription_id: str,
    stream: str,
    cursor: Cursor,
    per_minute: Mapping[int, int],
    counted_as: Mapping[str, Mapping[int, int]] | None = None,
) -> None:
    """The cursor moves and the acknowledged events are counted, in one transaction
    (``per_minute`` empty: only the cursor moves, past rows no filter kept). Three Core
    statements on one connection (the ORM session's reads and flush cost the pusher more
    than its requests). ``counted_as``: counts per stream other than the cursor's (the
    late notes' stream counts the readings and status events it delivers as such)."""
    counts = dict(counted_as) if counted_as is not None else {stream: per_minute}
    delivered = sum(sum(c.values()) for c in counts.values())
    async with engine.begin() as conn:
        moved = await conn.execute(
            update(CursorRow)
            .where(CursorRow.subscription_id == subscription_id, CursorRow.stream == stream)
            .values(time_ns=cursor.time_ns, key=cursor.key)
        )
        if not moved.rowcount:  # a stream added after the subscription (the late notes)
            await conn.execute(
                _upsert_insert(engine)(CursorRow).values(
                    subscription_id=subscription_id, stream=stream,
                    time_ns=cursor.time_ns, key=cursor.key,
                )
            )  # fmt: skip
        if not delivered:
            return
        insert = _upsert_insert(engine)
        rows = [
            {"subscription_id": subscription_id, "stream": s, "minute": m, "count": n}
            for s, per in counts.items()
            for m, n in per.items()
        ]
        statement = insert(AckRow)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["subscription_id", "stream", "minute"],
                set_={"count": AckRow.count + statement.excluded["count"]},
            ),
            rows,
        )
        await conn.execute(
            update(SubscriptionRow)
            .where(SubscriptionRow.id == subscription_id)
            .values(
                delivered=SubscriptionRow.delivered + delivered,
                failing_since=None,
                last_error=None,
                last_delivery_at=utcnow(),
            )
        )


def _upsert_insert(engine: AsyncEngine) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE of the registry's dialect (SQLite or PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


async def record_failure(
    engine: AsyncEngine, subscription_id: str, error: str, now: datetime
) -> datetime:
    """Counts a failed attempt; returns when the current failure streak began."""
    async with _sessions(engine)() as session, session.begin():
        row = await session.get(SubscriptionRow, subscription_id, with_for_update=True)
        if row is None:
            return now
        row.failed_attempts += 1
        row.last_error = error[:1000]
        if row.failing_since is None:
            row.failing_since = now
        since: datetime = row.failing_since
        return since


async def acked(
    engine: AsyncEngine, subscription_id: str, start_minute: int, end_minute: int
) -> dict[str, int]:
    """Events acknowledged per stream whose time falls in ``[start, end)`` (minutes)."""
    async with _sessions(engine)() as session:
        q = (
            select(AckRow.stream, func.sum(AckRow.count))
            .where(
                AckRow.subscription_id == subscription_id,
                AckRow.minute >= start_minute,
                AckRow.minute < end_minute,
            )
            .group_by(AckRow.stream)
        )
        return {stream: int(n) for stream, n in (await session.execute(q)).all()}
