"""Helpers shared by tests: waiting on conditions with a deadline, running the parts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

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
    await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises the part's start-up error
    assert ready.is_set(), f"{coro_fn.__name__} not ready within 30s"
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
