"""Registry tables (SQLAlchemy 2). SQLite by default, PostgreSQL supported.

The schema is owned by the Alembic migrations beside this module
(``sensornet/registry/migrations``); these classes must match the head revision.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SENSOR_STATUSES = ("planned", "installed", "active", "maintenance", "retired")
#: Statuses whose readings are accepted (a sensor being installed may already report).
REPORTING_STATUSES = frozenset({"installed", "active", "maintenance"})
ROLES = ("viewer", "engineer", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Gateway(Base):
    """A gateway that forwards packs for the sensors attached to it."""

    __tablename__ = "gateways"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subdistrict: Mapped[str] = mapped_column(String(64))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Sensor(Base):
    __tablename__ = "sensors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    subdistrict: Mapped[str] = mapped_column(String(64))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="active")
    gateway_id: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    address: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    mounting: Mapped[str] = mapped_column(String(64), default="")
    installed_on: Mapped[date | None] = mapped_column(Date, default=None)
    commissioned_on: Mapped[date | None] = mapped_column(Date, default=None)
    owner_department: Mapped[str] = mapped_column(String(128), default="")
    firmware: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    credentials_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    #: LoRaWAN DevEUI, 16 upper-case hex digits (sensornet.deveui); unique when set
    dev_eui: Mapped[str | None] = mapped_column(String(16), default=None)
    #: The name its SenML packs give it (RFC 8428 bn/n), e.g. urn:dev:ow:10e2073a01080063;
    #: unique when set; unset, its id is its SenML name (sensornet.senml_resolve)
    senml_name: Mapped[str | None] = mapped_column(String(255), default=None)
    #: A Sensor.Community (airrohr) node: the chip id its firmware sends (``esp8266id``) and
    #: its location id in the public data API; each unique when set (docs/inputs/)
    sc_chip: Mapped[str | None] = mapped_column(String(32), default=None)
    sc_location: Mapped[str | None] = mapped_column(String(16), default=None)

    __table_args__ = (
        Index("ix_sensors_updated_at", "updated_at"),
        Index("ux_sensors_dev_eui", "dev_eui", unique=True),
        Index("ux_sensors_senml_name", "senml_name", unique=True),
        Index("ux_sensors_sc_chip", "sc_chip", unique=True),
        Index("ux_sensors_sc_location", "sc_location", unique=True),
        Index("ix_sensors_type", "type"),
        Index("ix_sensors_subdistrict", "subdistrict"),
        Index("ix_sensors_status", "status"),
    )


class AuditEntry(Base):
    """One change: who did it, when, and the entity before and after (JSON)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored (docs/registry.md says why that suffices)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    #: Written by the API at most once per ``SENSORNET_API_KEY_LAST_USED_S`` (api.key_cache)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class MaintenanceWindow(Base):
    """A sensor or a whole subdistrict under maintenance for a time window: its alarms are
    still recorded, but nobody is notified (Alertmanager silences, alarms/notify.py)."""

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sensor_id: Mapped[str | None] = mapped_column(String(64), default=None)
    subdistrict: Mapped[str | None] = mapped_column(String(64), default=None)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_maintenance_ends", "ends_at"),)
