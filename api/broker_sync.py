"""Credential changes reaching the broker, for the registry routes: refuse before writing
anything when the broker cannot be reached, and report a change the broker did not confirm
as a 503 problem that says what the registry kept and how to converge. The broker's own
words (host, port, file paths) go to the log under the problem's error id."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Request

from api.problems import concealed
from sensornet import broker_auth
from sensornet.broker_auth import BrokerSyncError

TITLE = "Broker not updated"


def _target(request: Request) -> broker_auth.BrokerTarget:
    return broker_auth.broker_target(request.app.state.settings)


async def ensure_broker(request: Request) -> None:
    """Before a change whose credentials must reach the broker: 503 if they cannot."""
    try:
        await broker_auth.check_broker(_target(request))
    except BrokerSyncError as exc:
        raise concealed(
            exc,
            503,
            TITLE,
            "The MQTT broker cannot be reached; nothing was changed. Try again once it runs.",
            instance=request.url.path,
        ) from exc


async def sync(request: Request, kept: str) -> int:
    """Have the broker accept exactly the registry's devices; ``kept`` says what the
    registry already holds, for the problem if the broker does not confirm. Returns how
    many devices the broker accepts."""
    settings = request.app.state.settings
    async with _confirmed(request, kept):
        return await broker_auth.sync_broker(
            request.app.state.registry, _target(request), settings.broker_coalesce_s
        )
    raise AssertionError("unreachable: _confirmed raises or the block returned")


async def apply(request: Request, kept: str) -> None:
    """``sync`` without the count: in the scaled shape (the broker asks the registry at
    each connection) nothing is read or delivered, so a registration costs its commit."""
    settings = request.app.state.settings
    async with _confirmed(request, kept):
        await broker_auth.apply_to_broker(
            request.app.state.registry, _target(request), settings.broker_coalesce_s
        )


@contextlib.asynccontextmanager
async def _confirmed(request: Request, kept: str) -> AsyncIterator[None]:
    try:
        yield
    except BrokerSyncError as exc:
        raise concealed(
            exc,
            503,
            TITLE,
            f"{kept}, but the MQTT broker did not confirm it. Once the broker is back, "
            "`sensornet registry sync-broker` makes it match the registry.",
            instance=request.url.path,
        ) from exc
