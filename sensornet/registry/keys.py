"""API keys: random secrets, only their SHA-256 stored, each with one role.

Why SHA-256 and not argon2/bcrypt: those slow hashes protect *low-entropy* secrets
(passwords people choose) against offline guessing. A key here is 256 random bits, so
guessing it from its hash is as hard as guessing it outright; a fast hash also lets the
API look a key up by its hash on every request in microseconds (docs/registry.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sensornet.errors import SensornetError
from sensornet.registry.models import ROLES, ApiKey, utcnow
from sensornet.registry.service import audit

KEY_PREFIX = "snk_"
RANK = {role: i for i, role in enumerate(ROLES)}
#: The longest lifetime ``--expires-in`` takes; for longer, create the key without expiry.
MAX_LIFETIME = timedelta(days=3650)
_LIFETIME = re.compile(r"^([1-9][0-9]{0,6})([mhdw])$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_UNIT["w"] = 7 * _UNIT["d"]


class LastAdminKey(SensornetError):
    """Revoking this key would leave no admin key that works."""


class ApiKeyError(SensornetError):
    """An API key operation failed: unknown role, unknown key id or a bad lifetime."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id (for the audit log), name, role and expiry."""

    key_id: str
    name: str
    role: str
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}" + (f"({self.name})" if self.name else "")

    def has(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    role: str
    name: str
    created_at: datetime
    created_by: str
    revoked: bool
    expires_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_lifetime(text: str) -> timedelta:
    """``90d`` → 90 days (``<n>m|h|d|w``, at most ``MAX_LIFETIME``)."""
    found = _LIFETIME.match(text.strip())
    if found is None:
        raise ApiKeyError(f"key lifetime {text!r}: use <n>m|h|d|w, e.g. 90d")
    lifetime = int(found.group(1)) * _UNIT[found.group(2)]
    if lifetime > MAX_LIFETIME:
        raise ApiKeyError(f"key lifetime {text!r}: at most {MAX_LIFETIME.days}d")
    return lifetime


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.id,
        row.role,
        row.name,
        row.created_at,
        row.created_by,
        row.revoked_at is not None,
        row.expires_at,
        row.last_used_at,
    )


async def create_key(
    engine: AsyncEngine, role: str, name: str, actor: str, lifetime: timedelta | None = None
) -> tuple[KeyInfo, str]:
    """A new key, valid for ``lifetime`` (None: until revoked); the secret is returned
    once and never stored."""
    if role not in RANK:
        raise ApiKeyError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if lifetime is not None and not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ApiKeyError(f"key lifetime must be above 0 and at most {MAX_LIFETIME.days} days")
    key_id = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    expires_at = None if lifetime is None else now + lifetime
    row = ApiKey(
        id=key_id,
        key_hash=hash_key(secret),
        role=role,
        name=name,
        created_at=now,
        created_by=actor,
        expires_at=expires_at,
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    after = {"role": role, "name": name, "expires_at": expires_at and expires_at.isoformat()}
    async with sessions() as session, session.begin():
        session.add(row)
        audit(session, actor, "create", "api_key", key_id, None, after)
    return _info(row), secret


def _works(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or expires_at > now


async def revoke_key(engine: AsyncEngine, key_id: str, actor: str) -> KeyInfo:
    """Revoke a key; refused (``LastAdminKey``) when it is the last admin key that still
    works, since nothing could then create keys or revoke them but the database itself."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        if (await session.get(ApiKey, key_id)) is None:
            raise ApiKeyError(f"no API key {key_id!r}")
        # PostgreSQL: lock the working admin keys, so two admins revoking each other at
        # once are taken one after the other (SQLite: the UPDATE below takes the write lock
        # before the count, which then sees every committed revocation)
        working = (ApiKey.role == "admin") & ApiKey.revoked_at.is_(None)
        await session.scalars(select(ApiKey.id).where(working).with_for_update())
        row = await session.get(ApiKey, key_id, populate_existing=True)
        assert row is not None
        if row.revoked_at is None:
            row.revoked_at = now = utcnow()
            await session.flush()
            if row.role == "admin" and _works(row.expires_at, now):
                left = await session.scalars(select(ApiKey).where(working))
                if not any(_works(k.expires_at, now) for k in left):
                    raise LastAdminKey(
                        f"{key_id} is the last admin key that works: create another admin "
                        "key first, then revoke this one"
                    )
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
    """The principal of the key with this SHA-256 digest, or None (unknown or revoked);
    an expired key's principal is returned, so the API can say it expired. The API calls
    it through ``api.key_cache``."""
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(row.id, row.name, row.role, row.expires_at)


async def record_last_use(engine: AsyncEngine, used: Mapping[str, datetime]) -> None:
    """Set ``last_used_at`` of each key id to its time, in one transaction; a time older
    than the one stored (another API worker wrote a later one) changes nothing."""
    if not used:
        return
    async with engine.begin() as conn:
        for key_id, at in used.items():
            await conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
                .values(last_used_at=at)
            )
