"""Maintenance windows in the registry, on SQLite and a real PostgreSQL (migration 0007):
running and future windows listed, a sensor's or subdistrict's history, ending a window
now (a future one to nothing), and bad windows refused with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pg_server import BACKENDS, registry_on

from sensornet.registry.maintenance import (
    InvalidMaintenance,
    MaintenanceNotFound,
    add_window,
    current_windows,
    end_window,
    windows_for,
)
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings

NS = DeviceInfo("NS-M1", "noise", "beizhan", 31.25, 121.46, "active")
AREAS = frozenset({"beizhan", "jingansi"})


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    return await registry_on(request.param, settings, postgres)


async def test_windows_listed_ended_and_refused(settings: Settings) -> None:
    now = datetime.now(UTC)
    async with open_registry(settings.registry_database_url) as engine:
        await upsert_devices(engine, [NS])
        running = await add_window(engine, sensor_id="NS-M1", ends_at=now + timedelta(hours=2),
                                   reason="mic replaced", by="key:k(field) [engineer]")  # fmt: skip
        later = await add_window(
            engine, subdistrict="jingansi", starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=1, hours=4), by="cli:ops",
            known_subdistricts=AREAS,
        )  # fmt: skip
        assert running.active_at(datetime.now(UTC)) and not later.active_at(datetime.now(UTC))
        assert running.starts_at.tzinfo is not None
        assert [w.id for w in await current_windows(engine)] == [running.id, later.id]
        assert running.covers("NS-M1", "beizhan") and later.covers("X", "jingansi")
        assert not later.covers("NS-M1", "beizhan")

        ended = await end_window(engine, later.id)  # a future window: cut to nothing
        assert ended.starts_at == ended.ends_at
        ended = await end_window(engine, running.id)
        assert not ended.active_at(datetime.now(UTC) + timedelta(seconds=1))
        assert await current_windows(engine, datetime.now(UTC) + timedelta(seconds=1)) == []
        assert [w.id for w in await windows_for(engine, sensor_id="NS-M1")] == [running.id]
        with pytest.raises(MaintenanceNotFound):
            await end_window(engine, 9999)

        bad = [
            {"sensor_id": "NS-M1", "subdistrict": "beizhan", "ends_at": now + timedelta(hours=1)},
            {"ends_at": now + timedelta(hours=1)},
            {"sensor_id": "NOPE", "ends_at": now + timedelta(hours=1)},
            {"subdistrict": "atlantis", "ends_at": now + timedelta(hours=1)},
            {"sensor_id": "NS-M1", "ends_at": now - timedelta(minutes=1)},
            {"sensor_id": "NS-M1", "ends_at": now + timedelta(days=91)},
            {"sensor_id": "NS-M1", "ends_at": datetime(2099, 1, 1)},
        ]
        for kwargs in bad:
            with pytest.raises(InvalidMaintenance):
                await add_window(engine, by="t", known_subdistricts=AREAS, **kwargs)  # type: ignore[arg-type]
        assert len(await windows_for(engine)) == 2  # nothing else stored
