"""The pusher's reads of late points: the notes after its cursor (``late``), then the
noted points themselves from their measurements, made into the same events (same JSON,
same ids) the regular read would have made of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient, ParamValue, check_identifier
from sensornet.northbound.encode import Item
from sensornet.northbound.events import ALARM_EVENT_MEASUREMENT, Cursor, rfc3339_ns
from sensornet.northbound.late import (
    LATE_MEASUREMENT,
    STATUS_MEASUREMENT,
    Note,
    notes_page_query,
    parse_notes,
)
from sensornet.northbound.sources import (
    _keyed,
    _reading_items,
    _statement_series,
    _where,
    quantity_kinds,
)
from sensornet.northbound.spec import Filter, Kind, Spec
from sensornet.registry.store import DeviceInfo

#: The name of a subscription's stream of notes (its cursor is over the notes' stamps).
LATE_STREAM = "late"
#: Statements (one per noted sensor) in one InfluxDB request.
STATEMENTS_PER_READ = 100
#: A cursor key that sorts after every note's key.
END = "\U0010ffff"

Point = tuple[str, str, int]  # measurement, sensor id, time


@dataclass(frozen=True, slots=True)
class LatePage:
    """Points to deliver, in the order of their notes, each with its kind; ``upto``: the
    cursor once they are delivered (None: nothing new; its key ``END``: no note was read
    up to its time, nothing to record)."""

    points: list[tuple[Kind, Item]]
    upto: Cursor | None
    full: bool  # the read was cut at its limit: reading on at once finds more


def kind_of(note: Note) -> Kind:
    return _kind_of_measurement(note.measurement)


def _kind_of_measurement(measurement: str) -> Kind:
    if measurement == STATUS_MEASUREMENT:
        return "status"
    if measurement == ALARM_EVENT_MEASUREMENT:  # noted by the alarm runner (alarms/outbox)
        return "alarms"
    return "readings"


def wanted(note: Note, spec: Spec, start_ns: int) -> bool:
    """The subscription takes this point (status and alarm changes filtered by type and
    area when read: their type is not in the note)."""
    kind, flt = kind_of(note), spec.filter
    return (
        kind in spec.kinds
        and note.point_time >= start_ns
        and (kind != "readings" or not flt.types or note.measurement in flt.types)
        and (not flt.sensors or note.sensor_id in flt.sensors)
    )


async def read_late(
    influx: InfluxClient,
    spec: Spec,
    start_ns: int,
    catalogue: Catalogue,
    devices: Mapping[str, DeviceInfo],
    after: Cursor,
    horizon_ns: int,
    regular: Mapping[str, Cursor],
    limit: int,
    source: str,
) -> LatePage:
    """The notes after ``after`` up to ``horizon_ns`` and their points. A note whose point
    the regular read (``regular``: its cursor per kind) has not passed yet stops the page
    there: the regular read leaves that point to the notes, and delivering it before the
    points the regular read still owes would break the sensor's order for nothing."""
    q, params = notes_page_query(after, horizon_ns, limit)
    notes, full = parse_notes(await influx.query_body(q, params, method="POST"), after, limit)
    take: list[Note] = []
    upto: Cursor | None = None
    seen: set[Point] = set()
    stopped = False
    for note in notes:
        if wanted(note, spec, start_ns):
            cursor = regular.get(kind_of(note))
            if cursor is None or (note.point_time, note.sensor_id) > (
                cursor.time_ns,
                cursor.key,
            ):
                stopped = True
                break
            point = (note.measurement, note.sensor_id, note.point_time)
            if point not in seen:  # a write split and sent again notes its points again
                seen.add(point)
                take.append(note)
        upto = note.cursor
    if not stopped and not full and horizon_ns > after.time_ns:
        upto = Cursor(horizon_ns, END)  # every note up to the horizon is read
    if upto is not None and upto <= after:
        upto = None
    found = await _points(influx, take, spec.filter, catalogue, devices, source)
    points: list[tuple[Kind, Item]] = []
    for note in take:
        got = found.get((note.measurement, note.sensor_id, note.point_time))
        if got is not None and got[2] is not None:
            points.append((kind_of(note), got))
    return LatePage(points, upto, full and not stopped)


async def first_late_alarm(
    influx: InfluxClient, spec: Spec, start_ns: int, after: Cursor
) -> int | None:
    """The time of the earliest alarm change waiting in a note after ``after`` (the notes'
    cursor) for this subscription: the regular read of alarm changes stops there until
    the notes' stream has delivered it, so each alarm's changes (and all the
    subscription's alarm changes) still arrive in the order the runner decided them."""
    q = (
        'SELECT "point_time", "measurement", "sensor_id", "ingester" '  # noqa: S608
        f'FROM "{LATE_MEASUREMENT}" WHERE time >= $t0 AND "measurement" = $m'
    )
    params: dict[str, ParamValue] = {
        "t0": rfc3339_ns(after.time_ns), "m": ALARM_EVENT_MEASUREMENT,
    }  # fmt: skip
    notes, _ = parse_notes(await influx.query_body(q, params, method="POST"), after, 2**62)
    return min((n.point_time for n in notes if wanted(n, spec, start_ns)), default=None)


async def _points(
    influx: InfluxClient,
    notes: Sequence[Note],
    flt: Filter,
    catalogue: Catalogue,
    devices: Mapping[str, DeviceInfo],
    source: str,
) -> dict[Point, Item]:
    """The noted points as items, read per sensor over the span of its notes (only the
    noted times are kept)."""
    spans: dict[tuple[str, str], set[int]] = {}
    for n in notes:
        spans.setdefault((n.measurement, n.sensor_id), set()).add(n.point_time)
    groups = list(spans.items())
    kinds = quantity_kinds(catalogue)
    out: dict[Point, Item] = {}
    for i in range(0, len(groups), STATEMENTS_PER_READ):
        chunk = groups[i : i + STATEMENTS_PER_READ]
        params: dict[str, ParamValue] = {}
        statements = []
        for j, ((measurement, sensor_id), times) in enumerate(chunk):
            kind = _kind_of_measurement(measurement)
            params |= {f"s{j}": sensor_id, f"a{j}": rfc3339_ns(min(times)),
                       f"b{j}": rfc3339_ns(max(times))}  # fmt: skip
            area = Filter(flt.types if kind == "alarms" else (), flt.subdistricts, ())
            extra = "".join(f" AND {w}" for w in _where(area, kind, params))
            statements.append(
                f'SELECT * FROM "{check_identifier(measurement)}" WHERE "sensor_id" = $s{j} '  # noqa: S608
                f'AND time >= $a{j} AND time <= $b{j}{extra} GROUP BY "sensor_id"'
            )
        body = await influx.query_body("; ".join(statements), params, method="POST")
        for ((measurement, sensor_id), times), series in zip(
            chunk, _statement_series(body), strict=False
        ):
            kind = _kind_of_measurement(measurement)
            for s in series:
                ti = s["columns"].index("time")
                s["values"] = [v for v in s.get("values", []) if v[ti] in times]
            if kind == "readings":
                items = _reading_items(series, kinds, source)
            else:
                items = _keyed(kind, series, devices, kinds, flt, source)
            for it in items:
                out[(measurement, sensor_id, it[0])] = it
    return out


async def pending_late(
    influx: InfluxClient,
    spec: Spec,
    start_ns: int,
    kind: Kind,
    after: Cursor,
    regular: Cursor,
    window: tuple[int, int],
) -> int:
    """Noted points of ``kind`` timed in ``window`` (``[start, end)``) that the notes'
    stream has yet to deliver; those the regular cursor has not passed are left out (a
    count of the regular read's pending has them already)."""
    params: dict[str, ParamValue] = {
        "t0": rfc3339_ns(after.time_ns), "a": window[0], "b": window[1],
    }  # fmt: skip
    q = (
        'SELECT "point_time", "measurement", "sensor_id", "ingester" '  # noqa: S608
        f'FROM "{LATE_MEASUREMENT}" WHERE time >= $t0 AND "point_time" >= $a '
        'AND "point_time" < $b'
    )
    notes, _ = parse_notes(await influx.query_body(q, params, method="POST"), after, 2**62)
    points = {
        (n.measurement, n.sensor_id, n.point_time)
        for n in notes
        if kind_of(n) == kind
        and wanted(n, spec, start_ns)
        and (n.point_time, n.sensor_id) <= (regular.time_ns, regular.key)
    }
    return len(points)
