"""The broker login cache (sensornet/registry/logins.py) on a real registry: a device
registered a moment ago logs in at once, a revoked one is refused within the check
interval, repeated logins do not reach the registry, and a burst of changes is not read
again at every check."""

from __future__ import annotations

import asyncio

from sensornet.broker_auth import issue_credentials, revoke_credentials
from sensornet.registry.logins import LoginCache
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet


async def test_registration_revocation_and_the_registry_queries_they_cost(
    tmp_path: object,
) -> None:
    settings = Settings(state_dir=tmp_path, _env_file=None)  # type: ignore[arg-type]
    fleet = default_fleet(50)
    await register_fleet(settings, fleet)
    async with open_registry(settings.registry_database_url) as registry:
        creds = await issue_credentials(registry, [d.id for d in fleet])
        cache = LoginCache(registry, check_s=0.05)
        a, b = fleet[0].id, fleet[1].id
        assert await cache.login(a, creds[a])
        assert not await cache.login(a, "wrong")
        assert not await cache.login("nobody", "x")
        for device in fleet:  # a storm, twice: the second reaches the registry for none
            assert await cache.login(device.id, creds[device.id])
        queries = cache.stats.device_queries
        for device in fleet:
            assert await cache.login(device.id, creds[device.id])
        assert cache.stats.device_queries == queries

        await revoke_credentials(registry, [b])
        await asyncio.sleep(0.1)  # the check interval (0.05 s) has passed
        assert not await cache.login(b, creds[b])
        newer = await issue_credentials(registry, [b])
        await asyncio.sleep(0.1)
        assert await cache.login(b, newer[b])

        # the burst of 50 changes above is read while a late commit is possible, then not
        seen = cache.stats.changes_seen
        cache._since_moved_at = float("-inf")
        for _ in range(5):
            await asyncio.sleep(0.06)
            await cache.may_connect(a)
        assert cache.stats.changes_seen == seen
