"""Bulk import (CSV or JSON) and export (CSV, GeoJSON) of sensors.

An import is checked as a whole before anything is written: every bad row is reported
(row number, sensor id, field, message) and then nothing changes. A good file is applied
in one transaction. Empty cells mean "not given": a new sensor gets the default, an
existing one keeps its value, so running the same file twice changes nothing the second
time, and an exported file imports back as a no-op. Text cells of a CSV export are
neutralised against spreadsheet formulas (``sensornet.csv_cells``), and undone on import.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sensornet.csv_cells import neutralise, restore
from sensornet.errors import SensornetError
from sensornet.registry.lifecycle import check_transition
from sensornet.registry.models import Sensor, utcnow
from sensornet.registry.schemas import SensorIn, SensorOut
from sensornet.registry.service import Registry, audit, snapshot, to_out

#: Columns of the template and of CSV exports, in order.
COLUMNS = (
    "id",
    "type",
    "subdistrict",
    "lat",
    "lon",
    "status",
    "address",
    "description",
    "mounting",
    "installed_on",
    "commissioned_on",
    "owner_department",
    "firmware",
    "gateway_id",
    "dev_eui",
    "senml_name",
    "sc_chip",
    "sc_location",
)
MAX_ROWS = 100_000
_CHUNK = 500


class ImportFormatError(SensornetError):
    """The file is not a CSV with the template's header, nor a JSON list of sensors."""


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1-based data row (CSV: the header is row 0) or JSON list index + 1
    sensor_id: str | None
    field: str | None
    message: str


@dataclass
class ImportReport:
    dry_run: bool
    rows: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return not self.dry_run and not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "applied": self.applied,
            "rows": self.rows,
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "errors": [
                {"row": e.row, "sensor_id": e.sensor_id, "field": e.field, "message": e.message}
                for e in self.errors
            ],
        }


def parse_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))  # Excel writes a BOM
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in COLUMNS]
    if "id" not in header or unknown:
        raise ImportFormatError(
            f"CSV header must use the template's columns ({', '.join(COLUMNS)}); "
            f"unknown: {', '.join(unknown) or '-'}"
        )
    return [{k: restore(v) if isinstance(v, str) else v for k, v in r.items()} for r in reader]


def parse_json(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"not JSON: {exc}") from exc
    if isinstance(data, Mapping):
        data = data.get("sensors")
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise ImportFormatError('JSON must be a list of sensor objects or {"sensors": [...]}')
    return [dict(r) for r in data]


def _given(row: Mapping[str, Any]) -> dict[str, Any]:
    """Cells with a value; strings trimmed."""
    out = {}
    for key, value in row.items():
        if key is None:
            continue
        if isinstance(value, str):
            value = value.strip()
        if value not in ("", None):
            out[key] = value
    return out


async def import_sensors(
    registry: Registry,
    raw_rows: Sequence[Mapping[str, Any]],
    actor: str,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportReport:
    """All or nothing; ``progress(phase, done, total)`` ("checked", then "applied") lets
    the CLI draw a bar over a file of many thousand rows."""
    report = ImportReport(dry_run=dry_run, rows=len(raw_rows))
    if len(raw_rows) > MAX_ROWS:
        report.errors.append(RowError(0, None, None, f"more than {MAX_ROWS} rows; split the file"))
        return report
    rows = [_given(r) for r in raw_rows]
    ids = [str(r.get("id", "")) for r in rows]
    async with registry.session() as session, session.begin():
        existing: dict[str, Sensor] = {}
        wanted = sorted({i for i in ids if i})
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            found = await session.scalars(select(Sensor).where(Sensor.id.in_(chunk)))
            existing.update({s.id: s for s in found})
        seen: dict[str, int] = {}
        plan: list[tuple[Sensor | None, SensorIn]] = []
        numbers: list[int] = []
        for number, (row, sensor_id) in enumerate(zip(rows, ids, strict=True), start=1):
            error = _check_row(registry, row, sensor_id, seen, existing, number, plan)
            if error is not None:
                report.errors.append(error)
            else:
                numbers.append(number)
            if progress is not None:
                progress("checked", number, len(rows))
        report.errors += await _name_clashes(session, plan, numbers)
        if report.errors:
            report.errors.sort(key=lambda e: e.row)
            return report
        for done, (current, spec) in enumerate(plan, start=1):
            _apply(session, current, spec, actor, report)
            if progress is not None:
                progress("applied", done, len(plan))
        if dry_run:
            await session.rollback()
    return report


def _check_row(
    registry: Registry,
    row: dict[str, Any],
    sensor_id: str,
    seen: dict[str, int],
    existing: Mapping[str, Sensor],
    number: int,
    plan: list[tuple[Sensor | None, SensorIn]],
) -> RowError | None:
    if not sensor_id:
        return RowError(number, None, "id", "missing sensor id")
    if sensor_id in seen:
        return RowError(number, sensor_id, "id", f"same id as row {seen[sensor_id]}")
    seen[sensor_id] = number
    current = existing.get(sensor_id)
    merged = row if current is None else {**_comparable(to_out(current)), **row}
    try:
        spec = SensorIn.model_validate(merged, strict=False)
        if current is None:
            registry.check_new_id(spec.id)
        registry.check(spec.type, spec.subdistrict, spec.lat, spec.lon)
        if current is None and spec.status == "retired":
            raise SensornetError("cannot register a sensor as retired")
        if current is not None:
            if current.status == "retired" and _comparable(to_out(current)) != _as_out(spec):
                raise SensornetError("sensor is retired; register a new id instead")
            check_transition(sensor_id, current.status, spec.status)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return RowError(number, sensor_id, where or None, first.get("msg", "invalid"))
    except SensornetError as exc:
        return RowError(number, sensor_id, None, str(exc))
    plan.append((current, spec))
    return None


#: The unique names of a sensor besides its id, and how errors call each
UNIQUE_NAMES = {
    "dev_eui": "DevEUI", "senml_name": "SenML name", "sc_chip": "chip id",
    "sc_location": "location id",
}  # fmt: skip


async def _name_clashes(
    session: AsyncSession, plan: Sequence[tuple[Sensor | None, SensorIn]], numbers: Sequence[int]
) -> list[RowError]:
    errors: list[RowError] = []
    for column, label in UNIQUE_NAMES.items():
        errors += await _unique_clashes(session, plan, numbers, column, label)
    return errors


async def _unique_clashes(
    session: AsyncSession,
    plan: Sequence[tuple[Sensor | None, SensorIn]],
    numbers: Sequence[int],
    column: str,
    label: str,
) -> list[RowError]:
    """A unique name (a DevEUI, a SenML name, ...): two rows of the file with one, or a
    row with one that another sensor keeps after the import (a sensor of the file giving
    its name up is fine)."""
    errors: list[RowError] = []
    final = {spec.id: getattr(spec, column) for _, spec in plan}
    first: dict[str, tuple[int, str]] = {}
    for (_, spec), number in zip(plan, numbers, strict=True):
        value = getattr(spec, column)
        if value is None:
            continue
        if value in first:
            row, other = first[value]
            message = f"{label} {value} also on row {row} ({other})"
            errors.append(RowError(number, spec.id, column, message))
        else:
            first[value] = (number, spec.id)
    wanted = sorted(first)
    attribute = getattr(Sensor, column)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = await session.execute(select(Sensor.id, attribute).where(attribute.in_(chunk)))
        for holder, value in rows.all():
            number, sensor_id = first[str(value)]
            keeps = final.get(str(holder), value) == value
            if holder != sensor_id and keeps:
                message = f"{label} {value} is already registered to sensor {holder}"
                errors.append(RowError(number, sensor_id, column, message))
    return errors


def _comparable(out: SensorOut) -> dict[str, Any]:
    return out.model_dump(exclude={"created_at", "updated_at", "has_credentials"})


def _as_out(spec: SensorIn) -> dict[str, Any]:
    return _comparable(SensorOut(**spec.model_dump()))


def _apply(
    session: AsyncSession, current: Sensor | None, spec: SensorIn, actor: str, report: ImportReport
) -> None:
    if current is None:
        now = utcnow()
        row = Sensor(**spec.model_dump(), created_at=now, updated_at=now)
        session.add(row)
        audit(session, actor, "import", "sensor", spec.id, None, snapshot(row))
        report.created.append(spec.id)
        return
    if _comparable(to_out(current)) == _as_out(spec):
        report.unchanged += 1
        return
    before = snapshot(current)
    for key, value in spec.model_dump().items():
        setattr(current, key, value)
    current.updated_at = utcnow()
    audit(session, actor, "import", "sensor", spec.id, before, snapshot(current))
    report.updated.append(spec.id)


def to_csv(sensors: Iterable[SensorOut]) -> str:
    """Text cells neutralised against spreadsheet formulas, numbers left numbers
    (``sensornet.csv_cells``; ``parse_csv`` undoes it)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for s in sensors:
        writer.writerow({k: _cell(v) for k, v in s.model_dump(mode="json").items()})
    return out.getvalue()


def _cell(value: object) -> object:
    if value is None:
        return ""
    return neutralise(value) if isinstance(value, str) else value


def to_geojson(sensors: Iterable[SensorOut]) -> dict[str, Any]:
    """A FeatureCollection of points ([lon, lat], RFC 7946) with every field as property."""
    features = [
        {
            "type": "Feature",
            "id": s.id,
            "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
            "properties": s.model_dump(mode="json", exclude={"lat", "lon"}),
        }
        for s in sensors
    ]
    return {"type": "FeatureCollection", "features": features}


async def all_sensors(registry: Registry) -> list[SensorOut]:
    async with registry.session() as session:
        return [to_out(r) for r in (await session.scalars(select(Sensor).order_by(Sensor.id)))]
