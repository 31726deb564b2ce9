"""Migrations: a fresh database reaches head, a walking-skeleton database (made with
create_all, no alembic_version) keeps its rows and gains the new columns, and several
openers at once on a new database all succeed."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
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


# One process opening the registry, as each API worker, ingester and pusher does when it
# starts; all of them begin at the same instant (``at``), after their imports.
OPENER = """
import asyncio, sys, time
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices

async def main(url, at, me, wal):
    while time.time() < at:
        await asyncio.sleep(0.0005)
    async with open_registry(url) as engine:
        if wal:  # the northbound pusher's connections turn the file to WAL
            from alarms.northbound.pusher import quick_commits
            await quick_commits(engine)
        await upsert_devices(engine, [DeviceInfo(me, "noise", "beizhan", 31.2, 121.4, "active")])

asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] == "wal"))
"""


def test_processes_starting_together_on_a_new_sqlite_file(tmp_path: Path) -> None:
    """Four real processes open one brand-new SQLite registry at the same instant, two of
    them as the northbound pusher (WAL): every one starts, the schema is at head once.
    Before migrations took SQLite's write lock, about half of such processes died with
    "table sensors already exists"."""
    root = Path(__file__).resolve().parents[1]
    for attempt in range(2):
        db = tmp_path / f"fresh-{attempt}.db"
        at = time.time() + 4.0  # every process has imported by then
        url = f"sqlite+aiosqlite:///{db}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, url, str(at), f"NS-{k}", ("rollback", "wal")[k % 2]],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        failed = [
            e.strip().splitlines()[-1:] for p, e in zip(procs, errors, strict=True) if p.returncode
        ]
        assert not failed, failed
        con = sqlite3.connect(db)
        try:
            assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
            ids = {r[0] for r in con.execute("SELECT id FROM sensors")}
            assert ids == {f"NS-{k}" for k in range(4)}
        finally:
            con.close()
