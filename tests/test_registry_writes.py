"""What a registration costs the registry: one commit for the sensor, its credentials and
both audit rows; a SQLite registry in WAL mode, so another process's open write does not
stop reads (the broker login endpoint, the ingester) and vice versa."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from sensornet.broker_auth import (
    BrokerTarget,
    apply_to_broker,
    broker_device_count,
    broker_entries,
    register_with_credentials,
    verify,
)
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.registry.models import AuditEntry, Sensor
from sensornet.registry.schemas import SensorIn
from sensornet.registry.service import Registry, SensorExists
from sensornet.registry.store import load_devices, open_registry
from wiring.parts import default_fleet


def spec(sensor_id: str) -> SensorIn:
    model = default_fleet(1)[0]
    return SensorIn(
        id=sensor_id,
        type=model.type,
        subdistrict=model.subdistrict,
        lat=model.lat,
        lon=model.lon,
        status="active",
    )


async def test_registration_and_credentials_are_one_commit(tmp_path: Path) -> None:
    async with open_registry(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}") as engine:
        registry = Registry(engine, load_catalogue(), load_district())
        commits: list[int] = []
        event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
        out, password = await register_with_credentials(registry, spec("S-1"), "engineer:a")
        assert len(commits) == 1
        assert out.has_credentials
        with pytest.raises(SensorExists):  # nothing of a refused registration is kept
            await register_with_credentials(registry, spec("S-1"), "engineer:b")
        async with registry.session() as session:
            row = await session.get(Sensor, "S-1")
            assert row is not None and row.mqtt_password_hash is not None
            assert verify(password, row.mqtt_password_hash)
            audit = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        assert [(a.actor, a.action) for a in audit] == [
            ("engineer:a", "register"),
            ("engineer:a", "issue_credentials"),
        ]
        assert await broker_device_count(engine) == len(await broker_entries(engine)) == 1

        # the scaled shape's broker asks the registry at each connection: a registration
        # then reads nothing more (no pass over the fleet, no reload)
        statements: list[str] = []
        event.listen(
            engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2])
        )
        await apply_to_broker(engine, BrokerTarget(tmp_path, asks_registry=True))
        assert statements == []


async def test_reads_go_on_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with open_registry(f"sqlite+aiosqlite:///{path}") as engine:
        registry = Registry(engine, load_catalogue(), load_district())
        await register_with_credentials(registry, spec("S-1"), "engineer:a")
        async with engine.connect() as conn:
            mode: Any = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            assert str(mode).lower() == "wal"
        writer = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        try:
            writer.execute("BEGIN EXCLUSIVE")  # the rollback journal: readers wait
            writer.execute("UPDATE sensors SET firmware = 'x' WHERE id = 'S-1'")
            started = time.perf_counter()
            assert list(await load_devices(engine)) == ["S-1"]  # the committed state
            assert time.perf_counter() - started < 2  # not SQLite's busy wait (5 s)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
