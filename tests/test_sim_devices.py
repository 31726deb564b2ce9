"""Simulated devices behave like devices on a real broker: per-device identities announce
a retained "online", leave a Last Will that the broker delivers when they vanish, and the
broker's ACL refuses a device publishing on another device's topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gmqtt
import pytest
from support import wait_until

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
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.client = gmqtt.Client("listener", clean_session=True)
        self.client.set_auth_credentials("ingester", "ingest-pw")
        self.client.on_message = self._on_message

    def _on_message(
        self, client: object, topic: str, payload: bytes, qos: int, props: object
    ) -> int:
        self.got.append((topic, payload))
        return 0

    async def start(self, port: int) -> None:
        await self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/+/status", qos=1)
        self.client.subscribe(f"{PREFIX}/+/readings", qos=1)


async def test_status_will_and_acl(device_broker: Mosquitto) -> None:
    port = device_broker.port
    aq = DeviceConnection("AQ-1-test", "AQ-1", "aq-pw", PREFIX, will_device="AQ-1")
    await aq.connect("127.0.0.1", port)
    aq.status("AQ-1", online=True)
    assert await aq.drain(5)

    listener = Listener()
    await listener.start(port)  # subscribes after the fact: the status is retained

    async def online() -> bool:
        return (f"{PREFIX}/AQ-1/status", STATUS_ONLINE) in listener.got

    await wait_until(online, timeout_s=10)

    # a device publishing on another device's topic is refused by the broker's ACL ...
    aq.publish(f"{PREFIX}/NS-2/readings", b'{"seq": 1, "pm25": 3}')
    aq.publish(f"{PREFIX}/AQ-1/readings", b'{"seq": 2, "pm25": 3}')
    assert await aq.drain(5)  # acknowledged either way: MQTT does not tell a QoS 1 sender

    async def own_arrived() -> bool:
        return any(t == f"{PREFIX}/AQ-1/readings" for t, _ in listener.got)

    await wait_until(own_arrived, timeout_s=10)
    assert not any(t == f"{PREFIX}/NS-2/readings" for t, _ in listener.got)

    # ... and a device that vanishes without DISCONNECT gets its Will delivered
    await aq.close(graceful=False)

    async def offline() -> bool:
        return (f"{PREFIX}/AQ-1/status", STATUS_OFFLINE) in listener.got

    await wait_until(offline, timeout_s=10)
    await listener.client.disconnect()


async def test_connect_retries_with_backoff_until_the_broker_is_up(tmp_path: Path) -> None:
    port = free_port()
    link = DeviceConnection("late-device", "simulator", "fleet-pw", PREFIX)
    broker = Mosquitto(
        name="mosquitto",
        home=tmp_path / "late",
        port=port,
        users={"simulator": "fleet-pw"},
        acl=broker_acl(PREFIX, "ingester", "simulator"),
    )
    connecting = asyncio.create_task(link.connect("127.0.0.1", port, attempts=10))
    await asyncio.sleep(0.5)
    assert not connecting.done()
    await asyncio.to_thread(broker.start)
    try:
        await asyncio.wait_for(connecting, 30)
        assert link.client.is_connected
        await link.close()
    finally:
        broker.stop()


async def test_a_link_reconnects_after_the_broker_restarts(device_broker: Mosquitto) -> None:
    link = DeviceConnection("AQ-1-restart", "AQ-1", "aq-pw", PREFIX, will_device="AQ-1")
    await link.connect("127.0.0.1", device_broker.port)
    await asyncio.to_thread(device_broker.stop)

    async def lost() -> bool:
        return not link.client.is_connected

    await wait_until(lost, timeout_s=10)
    await asyncio.sleep(1.5)  # a few failed attempts: the delay grows
    grown = link.client.reconnect_delay
    assert grown > 0.5
    await asyncio.to_thread(device_broker.start)

    async def back() -> bool:
        return bool(link.client.is_connected)

    await wait_until(back, timeout_s=40)
    assert link.reconnects >= 1
    assert link.client.reconnect_delay == 0.5  # reset once connected
    link.publish(f"{PREFIX}/AQ-1/readings", b'{"seq": 1, "pm25": 3}')
    assert await link.drain(10)
    await link.close()
