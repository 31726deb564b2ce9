"""Credential changes reaching the broker, for the registry routes: refuse before writing
anything when the broker cannot be reached, and report a change the broker did not confirm
as a 503 problem that says what the registry kept and how to converge."""

from __future__ import annotations

from fastapi import Request

from api.problems import Problem
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
        raise Problem(503, TITLE, f"nothing was changed: {exc}") from exc


async def sync(request: Request, kept: str) -> int:
    """Have the broker accept exactly the registry's devices; ``kept`` says what the
    registry already holds, for the problem if the broker does not confirm."""
    try:
        return await broker_auth.sync_broker(request.app.state.registry, _target(request))
    except BrokerSyncError as exc:
        raise Problem(
            503,
            TITLE,
            f"{kept}, but the broker did not confirm it: {exc}. Once the broker is back, "
            "`sensornet registry sync-broker` makes it match the registry",
        ) from exc
