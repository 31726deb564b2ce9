"""Helpers shared by tests: waiting on conditions with a deadline, running the parts,
MQTT test clients that are closed whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import gmqtt
from gmqtt.storage import PersistentStorage

from sensornet.mqtt_wire import GmqttHooks
from sensornet.settings import Settings

T = TypeVar("T")


async def wait_until(
    predicate: Callable[[], Awaitable[T]], timeout_s: float = 20.0, interval_s: float = 0.1
) -> T:
    """Poll an async predicate until it returns a truthy value or the deadline passes."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def running(
    coro_fn: Callable[[Settings, asyncio.Event, asyncio.Event], Awaitable[Any]],
    settings: Settings,
) -> AsyncIterator[asyncio.Event]:
    """Run a part (ingester, API) as a task until it is ready; on exit, stop and await it."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(coro_fn(settings, stop, ready))
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()  # left waiting when the part failed to start
    if task.done():
        task.result()  # raises the part's start-up error
    if not ready.is_set():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise AssertionError(f"{coro_fn.__name__} not ready within 30s")
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


class TestClient:
    """A gmqtt client for a test, with its own in-flight store so the test can wait for
    its QoS 1 messages to be acknowledged (``acked``) instead of sleeping."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, client_id: str, **kwargs: Any) -> None:
        self.storage = PersistentStorage()
        self.client = gmqtt.Client(client_id, persistent_storage=self.storage, **kwargs)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    async def acked(self, timeout_s: float = 30.0) -> None:
        """Until the broker acknowledged every message published so far."""
        async with asyncio.timeout(timeout_s):
            await self.storage.wait_empty()

    async def vanish(self) -> None:
        """Drop the connection without DISCONNECT (the broker sends the Will), and stop
        gmqtt from reconnecting: it is marked closed before the loss is noticed."""
        GmqttHooks(self.client).abort()
        await self.client.disconnect()


@contextlib.asynccontextmanager
async def mqtt_client(
    client_id: str,
    port: int,
    username: str | None,
    password: str | None,
    host: str = "127.0.0.1",
    **kwargs: Any,
) -> AsyncIterator[TestClient]:
    """A connected test client, disconnected on the way out whatever happened: gmqtt
    reconnects for ever by default, also after the test's broker has stopped, until
    ``disconnect`` (which is harmless on a connection already gone)."""
    device = TestClient(client_id, **kwargs)
    if username is not None:
        device.client.set_auth_credentials(username, password)
    try:
        await device.client.connect(host, port)
        yield device
    finally:
        await close_gmqtt(device.client)


async def close_gmqtt(client: gmqtt.Client) -> None:
    """Disconnect, and stop a reconnect already under way: gmqtt checks whether the client
    is still wanted only before its reconnect delay, then connects anyway (the tasks are
    found by their coroutine's ``self``: gmqtt keeps no handle on them)."""
    await client.disconnect()
    pending = [
        t
        for t in asyncio.all_tasks()
        if not t.done()
        and getattr(t.get_coro(), "cr_frame", None) is not None
        and t.get_coro().cr_frame.f_locals.get("self") is client  # type: ignore[union-attr]
    ]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        await client.disconnect()  # a connection it opened meanwhile


def sensor_spec(sensor_id: str, **over: Any) -> dict[str, Any]:
    """The body of ``POST /sensors`` for an active noise sensor in Jing'an Temple."""
    base = {
        "id": sensor_id,
        "type": "noise",
        "subdistrict": "jingansi",
        "lat": 31.2235,
        "lon": 121.4455,
        "status": "active",
    }
    return {**base, **over}
