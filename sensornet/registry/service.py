"""Registry operations field engineers perform, each one audited in the same transaction.

Register, update, move, change status, retire, look up and list. API and CLI both call
these, so a rule (the lifecycle, the catalogue check) lives here once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sensornet import cursors
from sensornet.catalogue import Catalogue
from sensornet.deveui import InvalidDevEui, normalise_dev_eui
from sensornet.district import District
from sensornet.errors import SensornetError
from sensornet.registry.lifecycle import check_transition
from sensornet.registry.models import AuditEntry, Sensor, utcnow
from sensornet.registry.schemas import Move, SensorIn, SensorOut, SensorPatch, StatusChange
from sensornet.reserved import BUILTIN_RESERVED, ReservedIdError, check_device_id

MAX_PAGE = 500


class SensorNotFound(SensornetError):
    """No sensor with that id in the registry."""


class SensorExists(SensornetError):
    """Registering an id that is already registered."""


class DevEuiTaken(SensornetError):
    """A DevEUI already registered to another sensor (DevEUIs are unique)."""


class NameTaken(SensornetError):
    """A SenML name, chip id or location id already registered to another sensor."""


class InvalidSensor(SensornetError):
    """A sensor entry names an unknown type or subdistrict, or a bad cursor/filter."""


@dataclass(frozen=True, slots=True)
class SensorFilter:
    type: str | None = None
    subdistrict: str | None = None
    status: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # min_lon, min_lat, max_lon, max_lat
    text: str | None = None
    dev_eui: str | None = None  # canonical (sensornet.deveui)


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, date | datetime) else value


def snapshot(row: Sensor) -> dict[str, Any]:
    """The sensor as audit JSON; the credential hash is reduced to whether there is one."""
    out = {k: _jsonable(v) for k, v in to_out(row).model_dump().items()}
    return out


def to_out(row: Sensor) -> SensorOut:
    return SensorOut(
        id=row.id,
        type=row.type,
        subdistrict=row.subdistrict,
        lat=row.lat,
        lon=row.lon,
        status=row.status,
        gateway_id=row.gateway_id,
        address=row.address or "",
        description=row.description or "",
        mounting=row.mounting or "",
        installed_on=row.installed_on,
        commissioned_on=row.commissioned_on,
        owner_department=row.owner_department or "",
        firmware=row.firmware or "",
        dev_eui=row.dev_eui,
        senml_name=row.senml_name,
        sc_chip=row.sc_chip,
        sc_location=row.sc_location,
        created_at=row.created_at,
        updated_at=row.updated_at,
        has_credentials=row.mqtt_password_hash is not None,
    )


def audit(
    session: AsyncSession,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=before,
            after=after,
        )
    )


async def _check_dev_eui(session: AsyncSession, dev_eui: str | None, sensor_id: str) -> None:
    """A clear error before the unique index would refuse the write."""
    if dev_eui is None:
        return
    holder = await session.scalar(select(Sensor.id).where(Sensor.dev_eui == dev_eui))
    if holder is not None and holder != sensor_id:
        raise DevEuiTaken(f"DevEUI {dev_eui} is already registered to sensor {holder}")


#: What a registry listing's cursor holds: the last sensor id of the page
_ID_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


#: Names other ways in give a sensor (unique columns): what each is called in errors
_NAMES = {"senml_name": "SenML name", "sc_chip": "chip id", "sc_location": "location id"}


async def _names_free(session: AsyncSession, values: dict[str, Any], sensor_id: str) -> None:
    """Each name finds one sensor (the columns are unique): say whose it is, not a 500."""
    for column, label in _NAMES.items():
        name = values.get(column)
        if name is None:
            continue
        query = select(Sensor.id).where(getattr(Sensor, column) == name, Sensor.id != sensor_id)
        other = await session.scalar(query)
        if other is not None:
            raise NameTaken(f"{label} {name} is already registered to sensor {other}")


def encode_cursor(last_id: str) -> str:
    return cursors.encode(last_id)


def decode_cursor(cursor: str) -> str:
    """Raises ``InvalidCursor`` for anything ``encode_cursor`` did not make."""
    return cursors.decode(cursor, _ID_KEY, "a sensor id")


@dataclass(frozen=True)
class Registry:
    """The registry with the data it checks entries against."""

    engine: AsyncEngine
    catalogue: Catalogue
    district: District
    #: ids no device may take (sensornet.reserved): give ``reserved_ids(settings)``
    reserved: frozenset[str] = BUILTIN_RESERVED

    def session(self) -> AsyncSession:
        return async_sessionmaker(self.engine, expire_on_commit=False)()

    def check(
        self,
        type_id: str | None = None,
        subdistrict: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> None:
        try:
            if type_id is not None:
                self.catalogue.get(type_id)
            if subdistrict is not None:
                self.district.get(subdistrict)
        except SensornetError as exc:
            raise InvalidSensor(str(exc)) from exc
        if lat is not None and lon is not None and (why := self.district.outside(lat, lon)):
            raise InvalidSensor(why)

    def check_new_id(self, device_id: str) -> None:
        """A new sensor or gateway may not take a service identity's name."""
        try:
            check_device_id(device_id, self.reserved)
        except ReservedIdError as exc:
            raise InvalidSensor(str(exc)) from exc

    def new_row(self, spec: SensorIn) -> Sensor:
        self.check_new_id(spec.id)
        self.check(spec.type, spec.subdistrict, spec.lat, spec.lon)
        if spec.status == "retired":
            raise InvalidSensor(f"sensor {spec.id}: cannot register as retired")
        now = utcnow()
        return Sensor(**spec.model_dump(), created_at=now, updated_at=now)

    async def register(self, spec: SensorIn, actor: str) -> SensorOut:
        async with self.session() as session, session.begin():
            return to_out(await self.add(session, spec, actor))

    async def add(self, session: AsyncSession, spec: SensorIn, actor: str) -> Sensor:
        """Register within the caller's transaction (with what must commit alongside, e.g.
        its credentials: ``sensornet.broker_auth.register_with_credentials``)."""
        if await session.get(Sensor, spec.id) is not None:
            raise SensorExists(f"sensor {spec.id} is already registered; update it instead")
        row = self.new_row(spec)
        await _check_dev_eui(session, spec.dev_eui, spec.id)
        await _names_free(session, spec.model_dump(), spec.id)
        session.add(row)
        audit(session, actor, "register", "sensor", spec.id, None, snapshot(row))
        return row

    async def _change(
        self, sensor_id: str, actor: str, action: str, changes: dict[str, Any]
    ) -> SensorOut:
        async with self.session() as session, session.begin():
            row = await session.get(Sensor, sensor_id, with_for_update=True)
            if row is None:
                raise SensorNotFound(f"no sensor {sensor_id!r} in the registry")
            if row.status == "retired" and action != "status":
                raise InvalidSensor(f"sensor {sensor_id} is retired; register a new id instead")
            if "status" in changes:
                check_transition(sensor_id, row.status, changes["status"])
            moved = "lat" in changes or "lon" in changes
            self.check(
                changes.get("type"),
                changes.get("subdistrict"),
                changes.get("lat", row.lat) if moved else None,
                changes.get("lon", row.lon) if moved else None,
            )
            if changes.get("dev_eui") is not None:
                await _check_dev_eui(session, changes["dev_eui"], sensor_id)
            await _names_free(session, changes, sensor_id)
            before = snapshot(row)
            for key, value in changes.items():
                setattr(row, key, value)
            after = snapshot(row)
            if after != before:
                row.updated_at = utcnow()
                after = snapshot(row)
                audit(session, actor, action, "sensor", sensor_id, before, after)
            return to_out(row)

    async def update(self, sensor_id: str, patch: SensorPatch, actor: str) -> SensorOut:
        return await self._change(sensor_id, actor, "update", patch.model_dump(exclude_unset=True))

    async def move(self, sensor_id: str, move: Move, actor: str) -> SensorOut:
        return await self._change(sensor_id, actor, "move", move.model_dump(exclude_none=True))

    async def set_status(self, sensor_id: str, change: StatusChange, actor: str) -> SensorOut:
        return await self._change(sensor_id, actor, "status", {"status": change.status})

    async def retire(self, sensor_id: str, actor: str) -> SensorOut:
        return await self.set_status(sensor_id, StatusChange(status="retired"), actor)

    async def get(self, sensor_id: str) -> SensorOut:
        async with self.session() as session:
            row = await session.get(Sensor, sensor_id)
            if row is None:
                raise SensorNotFound(f"no sensor {sensor_id!r} in the registry")
            return to_out(row)

    async def search(
        self, where: SensorFilter, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[SensorOut], str | None]:
        """One page ordered by id; the cursor is the last id seen (opaque to callers)."""
        limit = max(1, min(limit, MAX_PAGE))
        query = select(Sensor).order_by(Sensor.id).limit(limit + 1)
        if cursor:
            query = query.where(Sensor.id > decode_cursor(cursor))
        if where.type:
            query = query.where(Sensor.type == where.type)
        if where.subdistrict:
            query = query.where(Sensor.subdistrict == where.subdistrict)
        if where.status:
            query = query.where(Sensor.status == where.status)
        if where.dev_eui:
            query = query.where(Sensor.dev_eui == where.dev_eui)
        if where.bbox:
            min_lon, min_lat, max_lon, max_lat = where.bbox
            query = query.where(
                Sensor.lon >= min_lon,
                Sensor.lon <= max_lon,
                Sensor.lat >= min_lat,
                Sensor.lat <= max_lat,
            )
        if where.text:
            like = f"%{where.text}%"
            query = query.where(
                or_(
                    Sensor.id.ilike(like),
                    Sensor.address.ilike(like),
                    Sensor.description.ilike(like),
                    Sensor.dev_eui.ilike(like),
                )
            )
        async with self.session() as session:
            rows: Sequence[Sensor] = (await session.scalars(query)).all()
        items = [to_out(r) for r in rows[:limit]]
        more = len(rows) > limit
        return items, encode_cursor(items[-1].id) if more and items else None

    async def history(self, sensor_id: str, limit: int = 100) -> list[AuditEntry]:
        query = (
            select(AuditEntry)
            .where(AuditEntry.entity == "sensor", AuditEntry.entity_id == sensor_id)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        async with self.session() as session:
            return [*(await session.scalars(query)).all()]


def parse_dev_eui(text: str) -> str:
    """A DevEUI filter in any accepted spelling, canonical (``InvalidSensor`` if not one)."""
    try:
        return normalise_dev_eui(text)
    except InvalidDevEui as exc:
        raise InvalidSensor(str(exc)) from exc


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``min_lon,min_lat,max_lon,max_lat`` (WGS84, as GeoJSON orders it)."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4 or parts[0] > parts[2] or parts[1] > parts[3]:
        raise InvalidSensor(f"bbox {text!r}: give min_lon,min_lat,max_lon,max_lat")
    return parts
