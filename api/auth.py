"""API key authentication and role checks as FastAPI dependencies.

``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``). A missing, unknown, revoked
or expired key is 401 with ``WWW-Authenticate`` (RFC 6750's ``invalid_token`` when a key
was sent); a valid key whose role is too low is 403. Keys are looked up through
``api.key_cache`` (a revoked key stops working within seconds), which also notes each
key's last use. The secret is never echoed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.key_cache import KeyCache
from api.problems import Problem
from sensornet.registry.keys import Principal
from sensornet.registry.models import utcnow

_bearer = HTTPBearer(auto_error=False, description="An API key: `sensornet keys create`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sensornet"'}
INVALID = {"WWW-Authenticate": 'Bearer realm="sensornet", error="invalid_token"'}


async def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Principal:
    return await authenticated(request, bearer.credentials if bearer is not None else header)


async def presented(request: Request) -> Principal:
    """The ``principal`` dependency run on a request outside FastAPI's solver, with the
    same schemes (``api.body_guard`` authenticates before a body is read)."""
    return await principal(request, await _bearer(request), await _header(request))


async def authenticated(request: Request, secret: str | None) -> Principal:
    if not secret:
        raise Problem(
            401,
            "Authentication required",
            "send Authorization: Bearer <API key>",
            headers=CHALLENGE,
        )
    cache: KeyCache = request.app.state.key_cache
    found = await cache.principal(secret)
    if found is None:
        raise Problem(401, "Invalid API key", "the key is unknown or revoked", headers=INVALID)
    if found.expires_at is not None and found.expired(utcnow()):
        raise Problem(
            401,
            "API key expired",
            f"key {found.key_id} expired at {found.expires_at.isoformat()}; "
            "ask an admin for a new key",
            headers=INVALID,
        )
    cache.used(found)
    return found


def check_role(who: Principal, role: str) -> Principal:
    if not who.has(role):
        raise Problem(403, "Forbidden", f"this needs the {role} role; your key is {who.role}")
    return who


def require(role: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting callers whose role is ``role`` or higher."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        return check_role(who, role)

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Engineer = Annotated[Principal, Depends(require("engineer"))]
Admin = Annotated[Principal, Depends(require("admin"))]
