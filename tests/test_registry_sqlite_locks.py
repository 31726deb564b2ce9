"""A SQLite registry shared by processes (the demo's API, ingester, alarm runner and
northbound pusher; API workers): while another process holds the write lock, a reader
is answered at once (WAL) and a writer waits for the commit instead of failing with
"database is locked" after the sqlite3 module's default 5 s."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

from sensornet.northbound import store as northbound
from sensornet.registry.store import DeviceInfo, load_devices, open_registry, upsert_devices

HOLD_S = 7.0  # longer than sqlite3's default busy timeout (5 s)

# Another process: takes the write lock, holds it HOLD_S, commits a sensor.
HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE sensors SET address = 'held' WHERE id = 'NS-0'")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


async def test_readers_go_on_and_writers_wait_while_another_process_writes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "registry.db"
    url = f"sqlite+aiosqlite:///{db}"
    async with open_registry(url) as engine:
        await upsert_devices(
            engine, [DeviceInfo("NS-0", "noise", "beizhan", 31.2, 121.4, "active")]
        )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(db), str(HOLD_S), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"holding"
        held_at = time.monotonic()
        async with open_registry(url) as engine:
            # the pusher's and the ingester's reads: answered at once, the lock held or not
            assert await northbound.list_subscriptions(engine) == []
            assert set(await load_devices(engine)) == {"NS-0"}
            assert time.monotonic() - held_at < HOLD_S / 2
            # a write waits for the holder's commit, then goes through
            new = DeviceInfo("NS-1", "noise", "beizhan", 31.2, 121.4, "active")
            assert await upsert_devices(engine, [new]) == 1
            assert time.monotonic() - held_at >= HOLD_S - 1.0
    finally:
        assert await asyncio.wait_for(holder.wait(), 30) == 0
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT id, address FROM sensors ORDER BY id").fetchall() == [
            ("NS-0", "held"),
            ("NS-1", ""),
        ]
    finally:
        con.close()
