"""Per-device MQTT credentials: issued by the registry, stored hashed, given to Mosquitto.

The registry is the source of truth. Each sensor or gateway gets a random password,
shown once; the registry keeps only its Mosquitto PBKDF2-SHA512 hash (the ``$7$``
format of ``mosquitto_passwd``), so the broker's password file is *derived* from the
registry and can be rebuilt at any time without knowing a single password.

Delivery to the broker (measured against the dynamic-security plugin, docs/registry.md):
write ``passwd.devices`` from the registry, join it with the service users in
``passwd.static`` into ``passwd`` (atomic rename), then SIGHUP Mosquitto, which reloads
the file without dropping connections. Access is confined by one static ACL pattern
(``<prefix>/%u/readings|status|pack``): a device can write only its own topics, and a
gateway's pack is checked by the ingester against the sensors attached to it.
A retired sensor or one with revoked credentials is simply left out of the file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sensornet.errors import SensornetError
from sensornet.registry.models import Gateway, Sensor, utcnow
from sensornet.registry.service import audit
from sensornet.settings import Settings

ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the password itself has 192 random bits
SALT_BYTES = 12
STATIC_FILE = "passwd.static"
DEVICES_FILE = "passwd.devices"
PASSWD_NAME = "passwd"  # noqa: S105 - a file name


class CredentialsError(SensornetError):
    """Credentials asked for an id that is neither a registered sensor nor a gateway."""


def new_password() -> str:
    return secrets.token_urlsafe(24)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>``, as ``mosquitto_passwd`` writes."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


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
            row = rows[device_id]
            had = row.mqtt_password_hash is not None
            password = new_password()
            row.mqtt_password_hash = mosquitto_hash(password)
            if isinstance(row, Sensor):
                row.credentials_issued_at = now
            entity = "sensor" if isinstance(row, Sensor) else "gateway"
            action = "rotate_credentials" if had else "issue_credentials"
            audit(
                session,
                actor,
                action,
                entity,
                device_id,
                {"credentials": had},
                {"credentials": True},
            )
            out[device_id] = password
    return out


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def write_static_users(home: Path, users: Mapping[str, str]) -> None:
    """The service identities (ingester, fleet) from their plaintext settings."""
    _atomic_write(
        home / STATIC_FILE, "".join(f"{u}:{mosquitto_hash(p)}\n" for u, p in users.items())
    )


def assemble_password_file(home: Path) -> Path:
    """``passwd`` = service users + registry devices (service users win a name clash)."""
    static = (home / STATIC_FILE).read_text() if (home / STATIC_FILE).exists() else ""
    taken = {line.split(":", 1)[0] for line in static.splitlines() if line}
    devices = (home / DEVICES_FILE).read_text() if (home / DEVICES_FILE).exists() else ""
    kept = [line for line in devices.splitlines() if line and line.split(":", 1)[0] not in taken]
    path = home / PASSWD_NAME
    _atomic_write(path, static + "".join(f"{line}\n" for line in kept))
    return path


def reload_broker(home: Path, pid_file_name: str = "mosquitto.pid") -> bool:
    """SIGHUP the broker running from ``home`` (if any): it rereads password and ACL files."""
    try:
        pid = int((home / pid_file_name).read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


async def sync_broker(engine: AsyncEngine, home: Path) -> int:
    """Make the broker at ``home`` accept exactly the registry's devices; returns how many."""
    entries = await broker_entries(engine)
    await asyncio.to_thread(write_devices, home, entries)
    return len(entries)


def write_devices(home: Path, entries: Mapping[str, str]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    _atomic_write(home / DEVICES_FILE, "".join(f"{u}:{h}\n" for u, h in sorted(entries.items())))
    assemble_password_file(home)
    reload_broker(home)


def broker_home(settings: Settings) -> Path:
    """Where the local broker of these settings keeps its files (``wiring.services``
    starts it there)."""
    return settings.state_dir.resolve() / "mosquitto"


async def credential_status(engine: AsyncEngine, device_id: str) -> CredentialStatus:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        row = await session.get(Sensor, device_id)
        if row is None:
            return CredentialStatus(False, None, False)
        issued = row.mqtt_password_hash is not None
        at = row.credentials_issued_at.isoformat() if row.credentials_issued_at else None
        return CredentialStatus(issued, at, issued and row.status != "retired")
