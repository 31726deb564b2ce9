"""Simulated devices behave like devices on a real broker: per-device identities announce
a retained "online", leave a Last Will that the broker delivers when they vanish, and the
broker's ACL refuses a device publishing on another device's topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import mqtt_client, wait_until

from gateway_sim.device_connection import DeviceConnection
from gateway_sim.payloads import STATUS_OFFLINE, STATUS_ONLINE
from wiring.services import Mosquitto, broker_acl, free_port

PREFIX = "city/v1"


@pytest.fixture
def device_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    service = Mosquitto(
        name="mosquitto",
        home=tmp_path / "mosquitto",
        port=free_port(),
        users={"ingester": "ingest-pw", "simulator": "fleet-pw", "AQ-1": "aq-pw", "NS-2": "ns-pw"},
        acl=broker_acl(PREFIX, "ingester", "simulator"),
    )
    service.start()
    yield service
    service.stop()


class Listener:
    """Hears status and readings with the ingester's rights; ``listening`` closes it."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def _on_message(
        self, client: object, topic: str, payload: bytes, qos: int, props: object
    ) -> int:
        self.got.append((topic, payload))
        return 0

    @contextlib.asynccontextmanager
    async def listening(self, port: int) -> AsyncIterator[None]:
        async with mqtt_client("listener", port, "ingester", "ingest-pw") as ear:
            ear.client.on_message = self._on_message
            ear.client.subscribe(f"{PREFIX}/+/status", qos=1)
            ear.client.subscribe(f"{PREFIX}/+/readings", qos=1)
            yield


@contextlib.asynccontextmanager
async def closing(link: DeviceConnection) -> AsyncIterator[DeviceConnection]:
    """The link is closed whatever the test did: gmqtt would reconnect for ever, also to
    the next test's broker on a reused port."""
    try:
        yield link
    finally:
        await link.close()


async def test_status_will_and_acl(device_broker: Mosquitto) -> None:
    port = device_broker.port
    listener = Listener()
    link = DeviceConnection("AQ-1-test", "AQ-1", "aq-pw", PREFIX, will_device="AQ-1")
    async with closing(link) as aq:
        await aq.connect("127.0.0.1", port)
        aq.status("AQ-1", online=True)
        assert await aq.drain(5)
        # subscribes after the fact: the status is retained
        async with listener.listening(port):

            async def online() -> bool:
                return (f"{PREFIX}/AQ-1/status", STATUS_ONLINE) in listener.got

            await wait_until(online, timeout_s=10)

            # a device publishing on another device's topic is refused by the broker's ACL
            aq.publish(f"{PREFIX}/NS-2/readings", b'{"seq": 1, "pm25": 3}')
            aq.publish(f"{PREFIX}/AQ-1/readings", b'{"seq": 2, "pm25": 3}')
            assert await aq.drain(5)  # acknowledged either way: MQTT does not tell a sender

            async def own_arrived() -> bool:
                return any(t == f"{PREFIX}/AQ-1/readings" for t, _ in listener.got)

            # the broker forwards one sender's messages in order: the refused one went first
            await wait_until(own_arrived, timeout_s=10)
            assert not any(t == f"{PREFIX}/NS-2/readings" for t, _ in listener.got)

            # ... and a device that vanishes without DISCONNECT gets its Will delivered
            await aq.close(graceful=False)

            async def offline() -> bool:
                return (f"{PREFIX}/AQ-1/status", STATUS_OFFLINE) in listener.got

            await wait_until(offline, timeout_s=10)


async def test_connect_retries_with_backoff_until_the_broker_is_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    broker = Mosquitto(
        name="mosquitto",
        home=tmp_path / "late",
        port=port,
        users={"simulator": "fleet-pw"},
        acl=broker_acl(PREFIX, "ingester", "simulator"),
    )
    caplog.set_level(logging.WARNING, logger="gateway_sim")
    async with closing(DeviceConnection("late-device", "simulator", "fleet-pw", PREFIX)) as link:
        connecting = asyncio.create_task(link.connect("127.0.0.1", port, attempts=10))
        try:

            async def retried() -> bool:  # no broker yet: it fails, waits and tries again
                failed = [r for r in caplog.records if r.getMessage().startswith("connect failed")]
                return len(failed) >= 2

            await wait_until(retried, timeout_s=30)
            assert not connecting.done()
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(connecting, 30)
            assert link.client.is_connected
        finally:
            connecting.cancel()
            broker.stop()


async def test_a_link_reconnects_after_the_broker_restarts(device_broker: Mosquitto) -> None:
    link = DeviceConnection("AQ-1-restart", "AQ-1", "aq-pw", PREFIX, will_device="AQ-1")
    async with closing(link):
        await link.connect("127.0.0.1", device_broker.port)
        await asyncio.to_thread(device_broker.stop)

        async def lost() -> bool:
            return not link.client.is_connected

        await wait_until(lost, timeout_s=10)

        async def grown() -> bool:  # a few failed attempts: the delay doubles each time
            return bool(link.client.reconnect_delay > 0.5)

        await wait_until(grown, timeout_s=30)
        await asyncio.to_thread(device_broker.start)

        async def back() -> bool:
            return bool(link.client.is_connected)

        await wait_until(back, timeout_s=40)
        assert link.reconnects >= 1
        assert link.client.reconnect_delay == 0.5  # reset once connected
        link.publish(f"{PREFIX}/AQ-1/readings", b'{"seq": 1, "pm25": 3}')
        assert await link.drain(10)
