"""Mosquitto single node: registrations that arrive together share one broker reload
(sensornet.broker_coalesce), and every one of them can connect afterwards."""

from __future__ import annotations

import asyncio

from sensornet import broker_coalesce
from sensornet.broker_auth import broker_target, issue_credentials, sync_broker
from sensornet.broker_files import connack
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet
from wiring.services import Mosquitto


async def test_concurrent_registrations_share_a_reload(
    settings: Settings, broker: Mosquitto
) -> None:
    fleet = default_fleet(20)
    await register_fleet(settings, fleet)
    target = broker_target(settings)
    assert target.auth_dir == broker.home
    creds: dict[str, str] = {}
    async with open_registry(settings.registry_database_url) as registry:
        for device in fleet:  # each registration committed, its request now asks for a sync
            creds.update(await issue_credentials(registry, [device.id]))
        counts = await asyncio.gather(
            *(sync_broker(registry, target, window_s=0.05) for _ in fleet)
        )
        requests, reloads = broker_coalesce.stats(target.auth_dir)
    assert requests == len(fleet)
    assert reloads == 1, reloads  # 20 asked within the window: one reload for all
    assert max(counts) == len(fleet)
    for device_id, password in creds.items():
        assert await asyncio.to_thread(connack, "127.0.0.1", broker.port, device_id, password) == 0


async def test_a_failed_reload_fails_every_caller_that_shared_it(tmp_path: object) -> None:
    from pathlib import Path

    calls = 0

    async def run() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("broker did not confirm")

    results = await asyncio.gather(
        *(broker_coalesce.coalesced(Path(str(tmp_path)), 0.02, run) for _ in range(5)),
        return_exceptions=True,
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_broker_that_asks_the_registry_needs_no_delivery(tmp_path: object) -> None:
    """The scaled shape (SENSORNET_BROKER_LOGINS=registry): registering needs no broker at
    hand, nothing is written or reloaded, and the count is what may connect."""
    from pathlib import Path

    from sensornet.broker_auth import check_broker

    settings = Settings(
        state_dir=Path(str(tmp_path)),
        broker_logins="registry",
        mqtt_port=1,  # nothing listens: a delivery would fail
        _env_file=None,  # type: ignore[call-arg]
    )
    fleet = default_fleet(3)
    await register_fleet(settings, fleet)
    target = broker_target(settings)
    async with open_registry(settings.registry_database_url) as registry:
        await check_broker(target)
        await issue_credentials(registry, [d.id for d in fleet[:2]])
        assert await sync_broker(registry, target) == 2
    assert not (target.auth_dir / "passwd").exists()
