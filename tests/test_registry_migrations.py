"""Migrations: a fresh database reaches head, a walking-skeleton database (made with
create_all, no alembic_version) keeps its rows and gains the new columns, and several
openers at once on a new database all succeed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sensornet.registry.migrate import head
from sensornet.registry.store import DeviceInfo, load_devices, open_registry, upsert_devices


async def test_skeleton_database_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE sensors (id VARCHAR(64) PRIMARY KEY, type VARCHAR(64) NOT NULL, "
        "subdistrict VARCHAR(64) NOT NULL, lat FLOAT NOT NULL, lon FLOAT NOT NULL, "
        "status VARCHAR(16) NOT NULL, gateway_id VARCHAR(64), updated_at DATETIME NOT NULL)"
    )
    con.execute(
        "INSERT INTO sensors VALUES ('NS-1','noise','beizhan',31.2,121.4,'active',NULL,"
        "'2026-01-01 00:00:00')"
    )
    con.commit()
    con.close()
    async with open_registry(f"sqlite+aiosqlite:///{db}") as engine:
        devices = await load_devices(engine)
        assert devices == {"NS-1": DeviceInfo("NS-1", "noise", "beizhan", 31.2, 121.4, "active")}
    con = sqlite3.connect(db)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
    columns = {row[1] for row in con.execute("PRAGMA table_info(sensors)")}
    assert {"address", "firmware", "mqtt_password_hash"} <= columns
    con.close()


async def test_concurrent_openers_on_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"

    async def opener(i: int) -> int:
        async with open_registry(url) as engine:
            return await upsert_devices(
                engine, [DeviceInfo(f"NS-{i}", "noise", "beizhan", 31.2, 121.4, "active")]
            )

    assert await asyncio.gather(*(opener(i) for i in range(4))) == [1, 1, 1, 1]
