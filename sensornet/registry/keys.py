"""API keys: random secrets, only their SHA-256 stored, each with one role.

Why SHA-256 and not argon2/bcrypt: those slow hashes protect *low-entropy* secrets
(passwords people choose) against offline guessing. A key here is 256 random bits, so
guessing it from its hash is as hard as guessing it outright; a fast hash also lets the
API look a key up by its hash on every request in microseconds (docs/registry.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sensornet.errors import SensornetError
from sensornet.registry.models import ROLES, ApiKey, utcnow
from sensornet.registry.service import audit

KEY_PREFIX = "snk_"
RANK = {role: i for i, role in enumerate(ROLES)}


class ApiKeyError(SensornetError):
    """An API key operation failed: unknown role or unknown key id."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id (for the audit log), name and role."""

    key_id: str
    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}" + (f"({self.name})" if self.name else "")

    def has(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    role: str
    name: str
    created_at: datetime
    created_by: str
    revoked: bool


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.id, row.role, row.name, row.created_at, row.created_by, row.revoked_at is not None
    )


async def create_key(engine: AsyncEngine, role: str, name: str, actor: str) -> tuple[KeyInfo, str]:
    """A new key; the secret is returned once and never stored."""
    if role not in RANK:
        raise ApiKeyError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    key_id = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        id=key_id,
        key_hash=hash_key(secret),
        role=role,
        name=name,
        created_at=utcnow(),
        created_by=actor,
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        session.add(row)
        audit(session, actor, "create", "api_key", key_id, None, {"role": role, "name": name})
    return _info(row), secret


async def revoke_key(engine: AsyncEngine, key_id: str, actor: str) -> KeyInfo:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        row = await session.get(ApiKey, key_id)
        if row is None:
            raise ApiKeyError(f"no API key {key_id!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit(
                session, actor, "revoke", "api_key", key_id, {"revoked": False}, {"revoked": True}
            )
        return _info(row)


async def list_keys(engine: AsyncEngine) -> list[KeyInfo]:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        rows = (await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all()
        return [_info(r) for r in rows]


async def principal_of(engine: AsyncEngine, digest: str) -> Principal | None:
    """The principal of the live key with this SHA-256 digest, or None (unknown or
    revoked). The API calls it through ``api.key_cache``."""
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(row.id, row.name, row.role)
