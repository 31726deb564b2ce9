"""Bring a registry database to the newest schema with Alembic, without an alembic.ini.

A database made by the walking skeleton (``create_all``, no ``alembic_version``) is
stamped at revision 0001 first, so its rows are kept and only the new columns added.

Several processes may open a new database at once (API workers, the ingester, the
northbound pusher, which also turns a SQLite file to WAL). Each migrates under a lock held
by the database itself, and looks at the revision again once it holds it, so one migrates
and the others find the schema at head: PostgreSQL, an advisory lock in the migration's
transaction; a SQLite file, the whole migration in one ``BEGIN IMMEDIATE`` transaction
(SQLite's DDL is transactional, but Python's sqlite3 runs ``CREATE TABLE`` outside any
transaction unless told otherwise: two processes then both created tables and the
second failed with "table sensors already exists"). The others wait up to
``SQLITE_MIGRATION_WAIT_S`` for the lock; a migration that fails leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"
#: Serialises concurrent migrations (API and ingesters starting together) on PostgreSQL.
_LOCK_ID = 151_000_001
#: How long a process waits for another's migration of the same SQLite file.
SQLITE_MIGRATION_WAIT_S = 60.0
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


def _sqlite_file(engine: AsyncEngine) -> bool:
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"


async def _migrate_sqlite_file(engine: AsyncEngine) -> None:
    """The migration in one ``BEGIN IMMEDIATE`` transaction, on a connection of its own
    (the recipe of SQLAlchemy's pysqlite/aiosqlite docs, "Serializable isolation"): the
    write lock is taken before the revision is read, DDL included, and released on
    commit or rollback."""
    own = create_async_engine(
        engine.url, poolclass=NullPool, connect_args={"timeout": SQLITE_MIGRATION_WAIT_S}
    )

    def no_implicit_transactions(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    def begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(own.sync_engine, "connect", no_implicit_transactions)
    event.listen(own.sync_engine, "begin", begin_immediate)
    try:
        async with own.begin() as conn:
            await conn.run_sync(_upgrade)
    finally:
        await own.dispose()


async def migrate(engine: AsyncEngine) -> None:
    """Run every pending migration (idempotent; a no-op read when already at head).
    Concurrent migrators of one database serialise on its lock (module docstring)."""
    async with engine.connect() as conn:
        if await conn.run_sync(_current) == head():
            return
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        if _sqlite_file(engine):
            await _migrate_sqlite_file(engine)
            return
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except DBAPIError:  # an in-memory database or a lost connection: once more
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
