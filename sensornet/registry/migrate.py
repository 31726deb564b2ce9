"""Bring a registry database to the newest schema with Alembic, without an alembic.ini.

A database made by the walking skeleton (``create_all``, no ``alembic_version``) is
stamped at revision 0001 first, so its rows are kept and only the new columns added.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "sensors" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Run every pending migration (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
