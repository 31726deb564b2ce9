"""The registry cache of the ingester and the API on SQLite and a real PostgreSQL: it
reads the sensors again exactly when a cheap check says they changed, and anyway every
``full_reload_s`` for a write that bypassed the registry."""

from __future__ import annotations

import dataclasses

import pytest
from pg_server import BACKENDS, registry_on
from sqlalchemy import delete, select, update

from sensornet.registry.models import Gateway, Sensor
from sensornet.registry.store import DeviceCache, open_registry, upsert_devices
from sensornet.settings import Settings
from wiring.parts import default_fleet


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    return await registry_on(request.param, settings, postgres)


async def test_adds_changes_and_removals_are_seen_at_the_next_check(settings: Settings) -> None:
    fleet = default_fleet(4)
    async with open_registry(settings.registry_database_url) as engine:
        await upsert_devices(engine, fleet[:3])
        cache = DeviceCache(engine, ttl_s=0)
        assert set(await cache.devices()) == {d.id for d in fleet[:3]}
        version = cache.version
        await cache.refresh()
        assert cache.version == version  # nothing changed: nothing read again

        await upsert_devices(engine, [fleet[3]])
        assert cache.get(fleet[3].id) is None  # not before the next check
        assert (await cache.devices())[fleet[3].id] == fleet[3]
        moved = dataclasses.replace(fleet[0], status="maintenance")
        await upsert_devices(engine, [moved])
        assert (await cache.devices())[fleet[0].id].status == "maintenance"
        async with engine.begin() as connection:
            await connection.execute(delete(Sensor).where(Sensor.id == fleet[1].id))
        assert fleet[1].id not in await cache.devices()
        assert cache.version == version + 3


async def test_a_write_that_bypassed_the_registry_is_seen_at_the_full_reload(
    settings: Settings,
) -> None:
    fleet = default_fleet(2)
    async with open_registry(settings.registry_database_url) as engine:
        await upsert_devices(engine, fleet)
        checking = DeviceCache(engine, ttl_s=0, full_reload_s=3600)
        reloading = DeviceCache(engine, ttl_s=0, full_reload_s=0)
        await checking.refresh()
        await reloading.refresh()
        async with engine.begin() as connection:  # as a hand-written SQL fix would
            stamp = (
                await connection.execute(select(Sensor.updated_at).where(Sensor.id == fleet[0].id))
            ).scalar_one()
            await connection.execute(
                update(Sensor)
                .where(Sensor.id == fleet[0].id)
                .values(status="retired", updated_at=stamp)
            )
        assert (await checking.devices())[fleet[0].id].status == fleet[0].status
        assert (await reloading.devices())[fleet[0].id].status == "retired"


async def test_a_ttl_keeps_requests_from_checking_each_time(settings: Settings) -> None:
    fleet = default_fleet(2)
    async with open_registry(settings.registry_database_url) as engine:
        await upsert_devices(engine, fleet[:1])
        cache = DeviceCache(engine, ttl_s=3600)
        assert len(await cache.devices()) == 1
        await upsert_devices(engine, fleet[1:])
        assert len(await cache.devices()) == 1  # within the TTL
        await cache.refresh(force=True)
        assert len(await cache.devices()) == 2


async def test_gateways_named_by_sensors_are_registered_and_seen(settings: Settings) -> None:
    fleet = [d for d in default_fleet(60) if d.gateway_id is not None][:3]
    assert fleet, "the default fleet attaches some sensors to gateways"
    async with open_registry(settings.registry_database_url) as engine:
        await upsert_devices(engine, fleet)
        async with engine.connect() as connection:
            rows = (await connection.execute(select(Gateway.id, Gateway.subdistrict))).all()
        first = {d.gateway_id: d.subdistrict for d in reversed(fleet)}
        assert sorted(rows) == sorted(first.items())  # placed with their first sensor
        cache = DeviceCache(engine, ttl_s=0)
        await cache.refresh()
        gateway = fleet[0].gateway_id
        assert gateway is not None and cache.is_gateway(gateway)
        assert not cache.is_gateway(fleet[0].id)
        async with engine.begin() as connection:  # retired through the registry
            await connection.execute(
                update(Gateway).where(Gateway.id == gateway).values(status="retired")
            )
        await cache.refresh()
        assert not cache.is_gateway(gateway)
