"""Registry access: the engine's lifetime, lookups, and the cache the ingester reads."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, make_url, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from sensornet.errors import SensornetError
from sensornet.registry.migrate import migrate
from sensornet.registry.models import REPORTING_STATUSES, Gateway, Sensor, utcnow
from sensornet.reserved import ReservedIdError, check_device_id

SENSOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistryError(SensornetError):
    """A registry entry is invalid; the message names the sensor and the field."""


class RegistryUnavailable(SensornetError):
    """The registry database cannot be opened or reached; the message names it."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the data path needs to know of a sensor: its tags and whether it may report."""

    id: str
    type: str
    subdistrict: str
    lat: float
    lon: float
    status: str
    gateway_id: str | None = None
    dev_eui: str | None = None  # LoRaWAN sensors: canonical DevEUI (sensornet.deveui)
    senml_name: str | None = None  # its SenML name when not its id (sensornet.senml_resolve)
    sc_chip: str | None = None  # Sensor.Community node: the airrohr firmware's chip id
    sc_location: str | None = None  # Sensor.Community node: its location id in the data API

    @property
    def reporting(self) -> bool:
        return self.status in REPORTING_STATUSES

    @property
    def publishers(self) -> frozenset[str]:
        """The devices whose topics may carry this sensor's readings: its own, and its
        gateway's packs. The topic's id is the authenticated one (the broker's ACL confines
        a device to its own topics); an id named in a payload proves nothing by itself."""
        if self.gateway_id is None:
            return frozenset((self.id,))
        return frozenset((self.id, self.gateway_id))


#: How long a connection to a SQLite registry waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_S = 30.0


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """A SQLite registry file in write-ahead-log mode, every commit still fsync'd.

    Several processes share the file (API, ingesters, the broker login endpoint, the
    pusher): in WAL mode their reads neither wait for a writer nor make it wait (the
    rollback journal's locks did: "database is locked"), and a commit is one append and
    one fsync of the log instead of a journal created, synced and deleted (measured: a
    registration with its credentials 3.5 -> 2.1 ms, docs/benchmarks.md). ``synchronous``
    stays FULL: a registration that showed a password once, or an audit row, survives a
    power cut; NORMAL measured no faster here. The mode is kept in the file, so a copy of
    it must include ``registry.db-wal`` (or use ``sqlite3 .backup``).

    Only the file's first connection switches it, and SQLite answers that switch "database
    is locked" at once, without waiting, when another connection holds a lock (processes
    opening a new file together): so the mode is read first, and a refused switch is tried
    again until another has made it or the busy timeout has passed."""
    cursor = dbapi_connection.cursor()
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            break
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # a new file's first moments only: another switches it
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


@asynccontextmanager
async def open_registry(url: str) -> AsyncIterator[AsyncEngine]:
    """Engine for the registry, its schema migrated to the newest revision (Alembic). A
    SQLite file's folder is created (it is the platform's own state folder); a database
    that cannot be opened is a ``RegistryUnavailable`` naming it."""
    database = make_url(url).database
    sqlite_file = make_url(url).get_backend_name() == "sqlite" and database not in (
        None,
        "",
        ":memory:",
    )
    if sqlite_file:
        Path(str(database)).parent.mkdir(parents=True, exist_ok=True)
    # a SQLite writer waits for another's commit up to SQLITE_BUSY_TIMEOUT_S (the sqlite3
    # module's default, 5 s, was shorter than a commit held up by a busy event loop)
    args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite_file else {}
    engine = create_async_engine(url, connect_args=args)
    if sqlite_file:
        event.listen(engine.sync_engine, "connect", _sqlite_wal)
    try:
        try:
            await migrate(engine)
        except (OperationalError, InterfaceError, OSError) as exc:
            shown = make_url(url).render_as_string(hide_password=True)
            cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's link
            raise RegistryUnavailable(f"registry database {shown}: {cause}") from exc
        yield engine
    finally:
        await engine.dispose()


#: The registry columns behind each field of ``DeviceInfo``, in its order.
_DEVICE_COLUMNS = tuple(getattr(Sensor, f.name) for f in fields(DeviceInfo))


def _info(row: Sensor) -> DeviceInfo:
    return DeviceInfo(*(getattr(row, f.name) for f in fields(DeviceInfo)))


async def upsert_devices(
    engine: AsyncEngine, devices: Iterable[DeviceInfo], actor: str = "system:upsert"
) -> int:
    """Insert or update sensors by id, bypassing the lifecycle (fleet bootstrap, tests);
    every change is audited. Returns how many rows changed."""
    from sensornet.registry.service import audit, snapshot

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    changed = 0
    devices = list(devices)
    for d in devices:
        try:
            check_device_id(d.id)
        except ReservedIdError as exc:
            raise RegistryError(str(exc)) from exc
    async with sessions() as session, session.begin():
        # only the rows these devices touch: a registration must not read the whole fleet
        existing: dict[str, Sensor] = {}
        gateways: set[str] = set()
        named = sorted({d.gateway_id for d in devices if d.gateway_id is not None})
        ids = [d.id for d in devices]
        for start in range(0, max(len(ids), len(named)), 500):
            chunk = ids[start : start + 500]
            query = select(Sensor).where(Sensor.id.in_(chunk))
            existing.update({s.id: s for s in (await session.scalars(query)).all()})
            chunk = named[start : start + 500]
            gateways.update(
                (await session.scalars(select(Gateway.id).where(Gateway.id.in_(chunk)))).all()
            )
        for d in devices:  # a gateway a sensor names exists, placed at its first sensor
            if d.gateway_id is not None and d.gateway_id not in gateways:
                now = utcnow()
                gateway = Gateway(
                    id=d.gateway_id, subdistrict=d.subdistrict, lat=d.lat, lon=d.lon,
                    status="active", created_at=now, updated_at=now,
                )  # fmt: skip
                session.add(gateway)
                gateways.add(d.gateway_id)
                after = {"subdistrict": d.subdistrict, "lat": d.lat, "lon": d.lon}
                audit(session, actor, "register", "gateway", d.gateway_id, None, after)
        for d in devices:
            row = existing.get(d.id)
            if row is None:
                now = utcnow()
                row = Sensor(
                    id=d.id,
                    type=d.type,
                    subdistrict=d.subdistrict,
                    lat=d.lat,
                    lon=d.lon,
                    status=d.status,
                    gateway_id=d.gateway_id,
                    dev_eui=d.dev_eui,
                    senml_name=d.senml_name,
                    sc_chip=d.sc_chip,
                    sc_location=d.sc_location,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                audit(session, actor, "register", "sensor", d.id, None, snapshot(row))
                changed += 1
            elif _info(row) != d:
                before = snapshot(row)
                row.type, row.subdistrict, row.lat, row.lon = d.type, d.subdistrict, d.lat, d.lon
                row.status, row.gateway_id, row.dev_eui = d.status, d.gateway_id, d.dev_eui
                row.senml_name, row.sc_chip, row.sc_location = (
                    d.senml_name,
                    d.sc_chip,
                    d.sc_location,
                )
                row.updated_at = utcnow()
                audit(session, actor, "update", "sensor", d.id, before, snapshot(row))
                changed += 1
    return changed


async def load_devices(engine: AsyncEngine) -> dict[str, DeviceInfo]:
    """Every sensor, by id, in id order (as Python orders strings, whatever the database's
    collation), so pages by id need no sort per request. Plain rows, not ORM objects: 3 ms
    instead of 23-60 ms for 2,000 sensors, which the caches below pay every few seconds."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(*_DEVICE_COLUMNS))).all()
    return {row[0]: DeviceInfo(*row) for row in sorted(rows, key=lambda row: str(row[0]))}


async def devices_fingerprint(engine: AsyncEngine) -> tuple[object, ...]:
    """Count and newest ``updated_at`` of sensors and of gateways: changes whenever one is
    added, removed or changed through the registry (every write sets ``updated_at``)."""
    async with engine.connect() as connection:
        sensors = (
            await connection.execute(select(func.count(), func.max(Sensor.updated_at)))
        ).one()
        gateways = (
            await connection.execute(select(func.count(), func.max(Gateway.updated_at)))
        ).one()
        return (*sensors, *gateways)


async def load_gateway_ids(engine: AsyncEngine) -> frozenset[str]:
    """The gateways that may report (not retired)."""
    async with engine.connect() as connection:
        ids = await connection.scalars(select(Gateway.id).where(Gateway.status != "retired"))
        return frozenset(ids.all())


# Ways a device is found besides its id (sensornet.formats.ID_SCHEMES): each loader reads
# ``(scheme, key, sensor_id)`` rows from the registry, keys normalised as the decoders of
# that scheme write them. DevEUIs need no loader: they are a column of the sensor
# (``DeviceInfo.dev_eui``, canonical form of ``sensornet.deveui``). An input's decoder names a
# device by ``RawReading(sensor_id=key, scheme=...)`` and the pipeline finds it through
# ``DeviceCache.resolve``. A way of naming is added by appending its loader here (with the
# column or table it reads); the cache reloads the aliases whenever it reloads the sensors.
AliasRows = Iterable[tuple[str, str, str]]
ALIAS_LOADERS: list[Callable[[AsyncConnection], Awaitable[AliasRows]]] = []


async def _column_aliases(connection: AsyncConnection) -> AliasRows:
    """The schemes kept as columns of the sensor: ``senml_name`` (its name in SenML packs),
    ``sc_chip`` and ``sc_location`` (a Sensor.Community node's chip id and location id)."""
    out: list[tuple[str, str, str]] = []
    for scheme in ("senml_name", "sc_chip", "sc_location"):
        column = getattr(Sensor, scheme)
        query = select(column, Sensor.id).where(column.is_not(None))
        out += [
            (scheme, str(key), str(sensor_id)) for key, sensor_id in await connection.execute(query)
        ]
    return out


ALIAS_LOADERS.append(_column_aliases)


async def load_aliases(engine: AsyncEngine) -> dict[tuple[str, str], str]:
    """``{(scheme, key): sensor id}`` from every alias loader."""
    aliases: dict[tuple[str, str], str] = {}
    if not ALIAS_LOADERS:
        return aliases
    async with engine.connect() as connection:
        for loader in ALIAS_LOADERS:
            for scheme, key, sensor_id in await loader(connection):
                aliases[(scheme, key)] = sensor_id
    return aliases


async def get_device(engine: AsyncEngine, sensor_id: str) -> DeviceInfo | None:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        row = await session.get(Sensor, sensor_id)
        return None if row is None else _info(row)


class DeviceCache:
    """A process's view of the registry's sensors, at most ``ttl_s`` old.

    A short TTL rather than change notification: it works the same on SQLite and
    PostgreSQL, and a new sensor is visible within ``ttl_s`` (docs/registry.md). Each
    check is one indexed query (``devices_fingerprint``); the sensors are read again only
    when it changed, or every ``full_reload_s`` in case a write bypassed the registry.
    """

    def __init__(self, engine: AsyncEngine, ttl_s: float = 2.0, full_reload_s: float = 60.0):
        self._engine = engine
        self._ttl_s, self._full_reload_s = ttl_s, full_reload_s
        self._devices: dict[str, DeviceInfo] = {}
        self._by_dev_eui: dict[str, DeviceInfo] = {}
        self._gateways: frozenset[str] = frozenset()
        self._aliases: dict[tuple[str, str], str] = {}
        self._checked_at = self._loaded_at = float("-inf")
        self._fingerprint: tuple[object, ...] | None = None
        self._lock = asyncio.Lock()
        self.version = 0  # changes exactly when the devices do: readers may cache by it

    async def refresh(self, force: bool = False, *, check_now: bool = False) -> None:
        """Read the sensors again when due and changed; ``check_now``: ask whether they
        changed even within the TTL (a device just logged in that the cache lacks);
        ``force``: read them whatever the answer."""
        due = force or check_now
        if not due and time.monotonic() - self._checked_at < self._ttl_s:
            return
        async with self._lock:  # one reload for all the requests that found it due
            now = time.monotonic()
            if not due and now - self._checked_at < self._ttl_s:
                return
            fingerprint = await devices_fingerprint(self._engine)
            if (
                force
                or fingerprint != self._fingerprint
                or now - self._loaded_at >= self._full_reload_s
            ):
                devices = await load_devices(self._engine)
                self._gateways = await load_gateway_ids(self._engine)
                aliases = await load_aliases(self._engine)
                if devices != self._devices or aliases != self._aliases:
                    self._devices, self._aliases = devices, aliases
                    self._by_dev_eui = {d.dev_eui: d for d in devices.values() if d.dev_eui}
                    self.version += 1
                self._fingerprint, self._loaded_at = fingerprint, now
            self._checked_at = now

    async def devices(self) -> Mapping[str, DeviceInfo]:
        """The sensors, refreshed first when due."""
        if time.monotonic() - self._checked_at >= self._ttl_s:  # else no coroutine at all
            await self.refresh()
        return self._devices

    @property
    def engine(self) -> AsyncEngine:
        """The registry behind the cache (an input reads its devices' credentials)."""
        return self._engine

    def get(self, sensor_id: str) -> DeviceInfo | None:
        return self._devices.get(sensor_id)

    def by_dev_eui(self, dev_eui: str) -> DeviceInfo | None:
        """The sensor registered with this DevEUI (canonical form, ``sensornet.deveui``)."""
        return self._by_dev_eui.get(dev_eui)

    def resolve(self, scheme: str, key: str) -> DeviceInfo | None:
        """The sensor named ``key`` in ``scheme`` (``""``: its registry id; ``deveui``: its
        DevEUI in canonical form), if registered; other schemes through ``ALIAS_LOADERS``."""
        if not scheme:
            return self._devices.get(key)
        if scheme == "deveui":
            return self._by_dev_eui.get(key)
        sensor_id = self._aliases.get((scheme, key))
        return None if sensor_id is None else self._devices.get(sensor_id)

    def is_gateway(self, device_id: str) -> bool:
        """A registered gateway that is not retired (it may publish its status)."""
        return device_id in self._gateways

    def __len__(self) -> int:
        return len(self._devices)
