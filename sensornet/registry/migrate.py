"""Bring a registry database to the newest schema with Alembic, without an alembic.ini.

A database made by the walking skeleton (``create_all``, no ``alembic_version``) is
stamped at revision 0001 first, so its rows are kept and only the new columns added.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
#: Serialises concurrent migrations (API and ingesters starting together) on PostgreSQL.
_LOCK_ID = 151_000_001
#: Alembic's ``context`` is process-global, so migrations in one process run one at a
#: time: one lock per event loop (the only module-level state here, for that reason).
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "sensors" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Run every pending migration (idempotent; a no-op read when already at head).
    Two processes racing to create a SQLite schema: the loser retries once."""
    async with engine.connect() as conn:
        if await conn.run_sync(_current) == head():
            return
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except DBAPIError:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
