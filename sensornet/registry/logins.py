"""Device logins answered from the registry, through a cache (the scaled shape's broker
asks at every connection: ``api/broker_auth_app.py``).

Why a cache and why this one: a reconnect storm of the whole fleet (a broker node
restarts) would otherwise be one registry query per connection. Entries are loaded per
device on first use (one primary-key query: a device registered a moment ago can connect
at once) and kept; at most every ``check_s`` one indexed range query reads the devices
changed since the last check (``updated_at``), so a revocation or retirement takes effect
within ``check_s``, and the cost of a change is that change, never the fleet's size: no
broker-wide reload (O(1) per registration). Answers are counted (``stats``) so the benches
can show how many logins reached the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sensornet.broker_auth import verify
from sensornet.registry.models import Gateway, Sensor

OVERLAP = timedelta(seconds=2)  # clock ties and commit order: re-read a little of the past


@dataclass
class LoginStats:
    logins: int = 0
    allowed: int = 0
    denied: int = 0
    hits: int = 0  # answered from the cache
    device_queries: int = 0  # one device read on a miss
    change_queries: int = 0  # the periodic "changed since" reads
    changes_seen: int = 0


def _may_connect(status: str, password_hash: str | None) -> str | None:
    return password_hash if password_hash is not None and status != "retired" else None


class LoginCache:
    """``{device id: password hash or None}``, kept current by change queries."""

    def __init__(self, engine: AsyncEngine, check_s: float = 0.5, forget_s: float = 600.0) -> None:
        """``forget_s``: the cache is dropped that often, so a change the change queries
        could miss (a write that bypassed ``updated_at``, a commit later than the overlap)
        lives at most that long."""
        self._engine = engine
        self._check_s = check_s
        self._forget_s = forget_s
        self._forgotten_at = time.monotonic()
        self._entries: dict[str, str | None] = {}
        self._since: datetime | None = None
        self._since_moved_at = float("-inf")  # monotonic time ``_since`` last advanced
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()
        self.stats = LoginStats()

    async def _changes(self) -> None:
        """Apply the devices changed since the last check (one query per table)."""
        if time.monotonic() - self._checked_at < self._check_s:
            return
        async with self._lock:
            if time.monotonic() - self._checked_at < self._check_s:
                return
            started = time.monotonic()
            if started - self._forgotten_at >= self._forget_s:
                self._entries.clear()
                self._forgotten_at = started
            since = self._since
            newest = since
            async with self._engine.connect() as conn:
                for table in (Sensor, Gateway):
                    self.stats.change_queries += 1
                    if since is None:  # the first check only finds where "now" is
                        last = await conn.scalar(select(func.max(table.updated_at)))
                        if last is not None and (newest is None or last > newest):
                            newest = last
                        continue
                    # the overlap is re-read only while a late commit of it is possible;
                    # after that, only what is newer (else a burst of changes, a bulk
                    # import, would be read again at every check)
                    recent = started - self._since_moved_at < 2 * OVERLAP.total_seconds()
                    column = table.updated_at
                    rows = await conn.execute(
                        select(table.id, table.status, table.mqtt_password_hash, column).where(
                            column >= since - OVERLAP if recent else column > since
                        )
                    )
                    for device_id, status, password_hash, updated_at in rows.all():
                        if device_id in self._entries:
                            self._entries[device_id] = _may_connect(status, password_hash)
                            self.stats.changes_seen += 1
                        if newest is None or updated_at > newest:
                            newest = updated_at
            if newest != since:
                self._since_moved_at = started
            self._since = newest or datetime.fromtimestamp(0, UTC)
            self._checked_at = started

    async def _entry(self, device_id: str) -> str | None:
        await self._changes()
        if device_id in self._entries:
            self.stats.hits += 1
            return self._entries[device_id]
        async with self._engine.connect() as conn:
            self.stats.device_queries += 1
            row = (
                await conn.execute(
                    select(Sensor.status, Sensor.mqtt_password_hash).where(Sensor.id == device_id)
                )
            ).first() or (
                await conn.execute(
                    select(Gateway.status, Gateway.mqtt_password_hash).where(
                        Gateway.id == device_id
                    )
                )
            ).first()
        entry = None if row is None else _may_connect(row[0], row[1])
        self._entries[device_id] = entry
        return entry

    async def login(self, device_id: str, password: str) -> bool:
        self.stats.logins += 1
        entry = await self._entry(device_id)
        ok = entry is not None and verify(password, entry)
        if ok:
            self.stats.allowed += 1
        else:
            self.stats.denied += 1
        return ok

    async def may_connect(self, device_id: str) -> bool:
        """Still allowed (for the vhost/resource/topic questions after the login)."""
        return await self._entry(device_id) is not None

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["LoginCache", "LoginStats"]
