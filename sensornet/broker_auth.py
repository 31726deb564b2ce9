"""Per-device MQTT credentials: issued by the registry, stored hashed, given to Mosquitto.

The registry is the source of truth. Each sensor or gateway gets a random password,
shown once; the registry keeps only its Mosquitto PBKDF2-SHA512 hash (the ``$7$``
format of ``mosquitto_passwd``), so the broker's password file is *derived* from the
registry and can be rebuilt at any time without knowing a single password.

Delivery to the broker (measured against the dynamic-security plugin, docs/registry.md):
``sync_broker`` writes ``passwd.devices`` from the registry into the broker's credential
store and has the broker reload it, confirmed, under a lock (``sensornet.broker_files``).
Mosquitto reloads without dropping connections, and cuts a connected client whose
password no longer matches. Access is confined by one static ACL pattern
(``<prefix>/%u/readings|status|pack``): a device can write only its own topics, and a
gateway's pack is checked by the ingester against the sensors attached to it.
A retired sensor or one with revoked credentials is simply left out of the file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sensornet import broker_files
from sensornet.broker_coalesce import coalesced
from sensornet.broker_files import (
    ACL,
    DEVICE_ITERATIONS,
    FLEET,
    PASSWD,
    STATIC,
    BrokerSyncError,
    BrokerTarget,
    mosquitto_hash,
)
from sensornet.errors import SensornetError
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.models import Gateway, Sensor, utcnow
from sensornet.registry.schemas import SensorIn, SensorOut
from sensornet.registry.service import Registry, audit, to_out
from sensornet.reserved import acl_denies, service_users
from sensornet.settings import Settings

__all__ = ["BrokerSyncError", "BrokerTarget", "mosquitto_hash"]  # re-exported for callers


class CredentialsError(SensornetError):
    """Credentials asked for an id that is neither a registered sensor nor a gateway."""


def new_password() -> str:
    return secrets.token_urlsafe(24)


def verify(password: str, encoded: str) -> bool:
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    mine = mosquitto_hash(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(mine.rsplit("$", 1)[1], digest)


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    issued: bool
    issued_at: str | None
    broker_access: bool  # issued and not retired: in the broker's password file


async def issue_credentials(
    engine: AsyncEngine, ids: Iterable[str], actor: str = "system:credentials"
) -> dict[str, str]:
    """New passwords for these sensors/gateways (rotation if they had one): returns
    ``{id: password}`` once; only hashes are stored. Call ``sync_broker`` afterwards."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, str] = {}
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        rows: dict[str, Sensor | Gateway] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows.update(
                {s.id: s for s in await session.scalars(select(Sensor).where(Sensor.id.in_(chunk)))}
            )
            rows.update(
                {
                    g.id: g
                    for g in await session.scalars(select(Gateway).where(Gateway.id.in_(chunk)))
                }
            )
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise CredentialsError(f"not registered: {', '.join(missing[:10])}")
        now = utcnow()
        for device_id in wanted:
            out[device_id] = _issue(session, rows[device_id], actor, now)
    return out


def _issue(session: AsyncSession, row: Sensor | Gateway, actor: str, now: datetime) -> str:
    """A new password for ``row``, its hash set and the change audited in ``session``."""
    had = row.mqtt_password_hash is not None
    password = new_password()
    row.mqtt_password_hash = mosquitto_hash(password, iterations=DEVICE_ITERATIONS)
    if isinstance(row, Sensor):
        row.credentials_issued_at = now
    entity = "sensor" if isinstance(row, Sensor) else "gateway"
    action = "rotate_credentials" if had else "issue_credentials"
    audit(session, actor, action, entity, row.id, {"credentials": had}, {"credentials": True})
    return password


async def register_with_credentials(
    registry: Registry, spec: SensorIn, actor: str
) -> tuple[SensorOut, str]:
    """Register a sensor and issue its password in one transaction (one commit, both audit
    rows in it): a sensor is never left registered without the credentials the caller was
    promised, and a registration costs one commit, not two. Returns the sensor and its
    password (shown once). Call ``sync_broker`` afterwards."""
    async with registry.session() as session, session.begin():
        row = await registry.add(session, spec, actor)
        password = _issue(session, row, actor, utcnow())
        return to_out(row), password


async def revoke_credentials(
    engine: AsyncEngine, ids: Iterable[str], actor: str = "system:credentials"
) -> int:
    """Remove the stored hashes; after ``sync_broker`` these devices cannot connect."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    revoked = 0
    async with sessions() as session, session.begin():
        for device_id in dict.fromkeys(ids):
            row: Sensor | Gateway | None = await session.get(Sensor, device_id)
            row = row or await session.get(Gateway, device_id)
            if row is None:
                raise CredentialsError(f"not registered: {device_id}")
            if row.mqtt_password_hash is not None:
                row.mqtt_password_hash = None
                entity = "sensor" if isinstance(row, Sensor) else "gateway"
                audit(
                    session,
                    actor,
                    "revoke_credentials",
                    entity,
                    device_id,
                    {"credentials": True},
                    {"credentials": False},
                )
                revoked += 1
    return revoked


async def without_credentials(engine: AsyncEngine) -> list[str]:
    """Sensors not retired that have no MQTT password yet (e.g. after a bulk import)."""
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        query = select(Sensor.id).where(
            Sensor.mqtt_password_hash.is_(None), Sensor.status != "retired"
        )
        return [str(i) for i in (await session.scalars(query.order_by(Sensor.id))).all()]


async def broker_entries(engine: AsyncEngine) -> dict[str, str]:
    """``{username: hash}`` of every device that may connect: credentials issued, not retired."""
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        sensors = await session.execute(
            select(Sensor.id, Sensor.mqtt_password_hash).where(
                Sensor.mqtt_password_hash.is_not(None), Sensor.status != "retired"
            )
        )
        gateways = await session.execute(
            select(Gateway.id, Gateway.mqtt_password_hash).where(
                Gateway.mqtt_password_hash.is_not(None), Gateway.status != "retired"
            )
        )
        return {str(i): str(h) for i, h in [*sensors.all(), *gateways.all()]}


async def broker_device_count(engine: AsyncEngine) -> int:
    """How many devices may connect (``broker_entries``' size, counted by the database: a
    registration in the scaled shape must not read the whole fleet)."""
    async with engine.connect() as connection:
        total = 0
        for table in (Sensor, Gateway):
            query = select(func.count()).where(
                table.mqtt_password_hash.is_not(None), table.status != "retired"
            )
            total += int(await connection.scalar(query) or 0)
        return total


def install_static(auth_dir: Path, users: Mapping[str, str], acl: str) -> None:
    """The service identities (the ingester) from their plaintext settings, and the ACL.
    Their passwords are chosen by operators, so they keep mosquitto_passwd's iterations."""
    hashed = {u: mosquitto_hash(p) for u, p in users.items()}
    broker_files.write_part(auth_dir, PASSWD, STATIC, broker_files.password_lines(hashed))
    broker_files.write_part(auth_dir, ACL, STATIC, acl)


def broker_home(settings: Settings) -> Path:
    """Where the local broker of these settings keeps its files (``wiring.services``
    starts it there); also its credential store unless SENSORNET_BROKER_AUTH_DIR says."""
    return settings.state_dir.resolve() / "mosquitto"


def broker_target(settings: Settings) -> BrokerTarget:
    """The credential store and broker these settings point at (docs/registry.md)."""
    auth_dir = settings.broker_auth_dir or broker_home(settings)
    return BrokerTarget(
        auth_dir=auth_dir.resolve(),
        reload=settings.broker_reload,
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        confirm_timeout_s=settings.broker_confirm_timeout_s,
        tls=MqttTls.from_settings(settings),
        asks_registry=settings.broker_logins == "registry",
    )


async def check_broker(target: BrokerTarget) -> None:
    """Raise :class:`BrokerSyncError` now if a credential change could not reach the broker."""
    if target.asks_registry:
        return  # the broker asks the registry at each connection: nothing to reach
    await asyncio.to_thread(broker_files.broker_reachable, target)


async def sync_broker(engine: AsyncEngine, target: BrokerTarget, window_s: float = 0.0) -> int:
    """Make the broker accept exactly the registry's devices, and confirm it did; returns
    how many. The registry is read under the store's lock, so of two concurrent callers the
    later one writes a state that includes the earlier one's change. Callers of one process
    that ask together share one reload (``sensornet.broker_coalesce``), also within
    ``window_s`` of each other."""

    if target.asks_registry:  # nothing to deliver: the next connection asks the registry
        return await broker_device_count(engine)
    return await _deliver(engine, target, window_s)


async def apply_to_broker(engine: AsyncEngine, target: BrokerTarget, window_s: float = 0.0) -> None:
    """``sync_broker`` for callers that do not report the count: where the broker asks the
    registry at each connection this reads nothing at all (a registration in the scaled
    shape costs its own commit, not a pass over the fleet)."""
    if not target.asks_registry:
        await _deliver(engine, target, window_s)


async def _deliver(engine: AsyncEngine, target: BrokerTarget, window_s: float) -> int:

    async def run() -> int:
        async with broker_files.locked(target.auth_dir):
            entries = await broker_entries(engine)
            await broker_files.deliver(target, entries)
        return len(entries)

    return await coalesced(target.auth_dir, window_s, run)


def fleet_acl(prefix: str, fleet_user: str, ingest_user: str = "ingester") -> str:
    """The fleet identity may write as any device, but never as a service identity. Only
    the service identities' names, not every reserved one: Mosquitto checks a user's
    entries one by one on every publish, and the fleet identity carries the load tests
    (a reserved id is never registered, so a reading there is refused by the ingester)."""
    denies = acl_denies(prefix, service_users(ingest_user, fleet_user))
    return f"user {fleet_user}\n{denies}topic write {prefix}/#\n"


@contextlib.asynccontextmanager
async def fleet_identity(settings: Settings) -> AsyncIterator[None]:
    """The simulator's shared login (test-only: it may publish as any device) exists in
    the broker only inside this block: added and confirmed on entry, removed on exit."""
    fleet_hash = mosquitto_hash(settings.fleet_password())
    target = broker_target(settings)

    async def put(present: bool) -> None:
        async with broker_files.locked(target.auth_dir):
            line = broker_files.password_lines({settings.mqtt_fleet_user: fleet_hash})
            acl = fleet_acl(
                settings.topic_prefix, settings.mqtt_fleet_user, settings.mqtt_ingest_user
            )
            broker_files.write_part(target.auth_dir, PASSWD, FLEET, line if present else None)
            broker_files.write_part(target.auth_dir, ACL, FLEET, acl if present else None)
            await broker_files.deliver(target)

    await put(True)
    try:
        yield
    finally:
        await put(False)


async def credential_status(engine: AsyncEngine, device_id: str) -> CredentialStatus:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        row = await session.get(Sensor, device_id)
        if row is None:
            return CredentialStatus(False, None, False)
        issued = row.mqtt_password_hash is not None
        at = row.credentials_issued_at.isoformat() if row.credentials_issued_at else None
        return CredentialStatus(issued, at, issued and row.status != "retired")
