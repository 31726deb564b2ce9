"""Where northbound events come from: InfluxDB, read forward from a cursor per stream.

Readings (one measurement per sensor type), device status (``device_status``) and alarm
changes (``alarm_event``) are all points in InfluxDB already, so a subscription's durable
outbox is its cursor per stream: nothing is copied, a batch read again after a crash is the
same batch, and a receiver's hour-long outage costs no storage of ours (docs/decisions.md,
"Northbound"). Each read takes the points after the cursor up to a horizon a little behind
now (points may land up to ``settle`` late), in ``(time, key)`` order. Queries bind every
value; identifiers come from the catalogue."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sensornet.catalogue import Catalogue
from sensornet.errors import InfluxError
from sensornet.influx import InfluxClient, ParamValue, check_identifier
from sensornet.northbound.encode import Item, SeriesEncoder, item
from sensornet.northbound.events import ALARM_EVENT_MEASUREMENT, Cursor, Event, rfc3339_ns
from sensornet.northbound.late import STATUS_MEASUREMENT, noted, notes_params, notes_query
from sensornet.northbound.spec import Filter, Kind, Spec
from sensornet.registry.store import DeviceInfo

#: Kinds whose points are stamped when written (arrival, decision): a short settle does.
WRITE_STAMPED: frozenset[Kind] = frozenset({"status", "alarms"})
_NOT_VALUES = frozenset({"time", "sensor_id", "subdistrict", "seq"})


#: Series turned into events between two yields to the event loop: a page of thousands of
#: rows is tens of milliseconds of Python, during which a request's answer would wait.
SERIES_PER_SLICE = 20
#: Kinds whose late points are noted (``late``): by the ingester (readings, status) and
#: by the alarm runner (alarm changes written after their stamp: ``alarms.outbox``).
NOTED: frozenset[Kind] = frozenset({"readings", "status", "alarms"})
_NOTHING: Mapping[tuple[str, str], set[int]] = {}
#: A cursor key above every sensor id: ``(t, END)`` means "everything up to t is read".
END = "\U0010ffff"


@dataclass(frozen=True, slots=True)
class Page:
    """What one read found: the matching events as ``(time, key, JSON)`` items, and how
    far it read (``upto`` may be past the last event: rows a filter left out, an empty
    stretch of time). ``rows``: rows InfluxDB returned (to size the next window);
    ``more``: the read stopped short of the horizon, so reading on at once finds more."""

    items: list[Item]
    upto: Cursor | None
    rows: int = 0
    more: bool = False


def next_window(window_ns: int, rows: int, target: int) -> int:
    """The time span of the next read: halved when a read brought over twice the target
    rows, doubled when under half, quadrupled when under a quarter (between 1 ms and 1 h):
    each read has a fixed cost, so a backlog is read in few large pages."""
    if rows > 2 * target:
        window_ns //= 2
    elif rows < target // 4:
        window_ns *= 4
    elif rows < target // 2:
        window_ns *= 2
    return min(max(window_ns, 1_000_000), 3600 * 1_000_000_000)


def _or(column: str, prefix: str, values: Sequence[str], params: dict[str, ParamValue]) -> str:
    for i, v in enumerate(values):
        params[f"{prefix}{i}"] = v
    return "(" + " OR ".join(f'"{column}" = ${prefix}{i}' for i in range(len(values))) + ")"


def _where(flt: Filter, kind: Kind, params: dict[str, ParamValue]) -> list[str]:
    out = []
    if flt.sensors:
        out.append(_or("sensor_id", "s", flt.sensors, params))
    if kind != "status" and flt.subdistricts:  # status points carry only sensor_id
        out.append(_or("subdistrict", "d", flt.subdistricts, params))
    if kind == "alarms" and flt.types:
        out.append(_or("type", "t", flt.types, params))
    return out


def measurements(kind: Kind, flt: Filter, catalogue: Catalogue) -> list[str]:
    if kind == "status":
        return [STATUS_MEASUREMENT]
    if kind == "alarms":
        return [ALARM_EVENT_MEASUREMENT]
    return [check_identifier(catalogue.get(t).measurement) for t in flt.types or catalogue.types]


def page_queries(
    kind: Kind, flt: Filter, catalogue: Catalogue, after: Cursor, until_ns: int, limit: int
) -> tuple[str, dict[str, ParamValue]]:
    """Two statements: the rest of the cursor's own instant (rows sharing its time; left
    out when the cursor says that instant was read whole), then the rows after it up to
    ``until_ns``, at most ``limit`` per series. Grouped by sensor,
    InfluxDB hands each series over as it is stored instead of merging them all by time
    (several times faster with hundreds of sensors); we sort."""
    params: dict[str, ParamValue] = {
        "t0": rfc3339_ns(after.time_ns),
        "h": rfc3339_ns(until_ns),
    }
    source = ", ".join(f'"{m}"' for m in measurements(kind, flt, catalogue))
    extra = "".join(f" AND {w}" for w in _where(flt, kind, params))
    same = f'SELECT * FROM {source} WHERE time = $t0{extra} GROUP BY "sensor_id"'  # noqa: S608
    rest = (
        f"SELECT * FROM {source} WHERE time > $t0 AND time <= $h{extra} "  # noqa: S608
        f'GROUP BY "sensor_id" LIMIT {int(limit)}'
    )
    if after.key == END:  # the cursor's instant was read whole: only the rest
        return rest, params
    return f"{same}; {rest}", params


def _statement_series(body: bytes) -> list[list[dict[str, Any]]]:
    """Per statement, its series as InfluxDB gave them."""
    out = []
    for result in orjson.loads(body).get("results", []):
        if "error" in result:
            raise InfluxError(f"InfluxQL error: {result['error']}", 200, result["error"])
        out.append(result.get("series", []))
    return out


def _statement_rows(body: bytes) -> list[list[tuple[str, dict[str, Any]]]]:
    """Per statement, (measurement, row) pairs."""
    out = []
    for series in _statement_series(body):
        found = []
        for s in series:
            columns = s["columns"]
            tags = s.get("tags") or {}
            for values in s.get("values", []):
                row = dict(zip(columns, values, strict=True))
                row.update(tags)
                found.append((s["name"], row))
        out.append(found)
    return out


_time_key = operator.itemgetter(0, 1)


def _reading_items(
    series: list[dict[str, Any]],
    kinds: Mapping[str, Mapping[str, str]],
    source: str,
    skip: Mapping[tuple[str, str], set[int]] = _NOTHING,
) -> list[Item]:
    """Readings straight to their CloudEvents JSON (``encode``): the hot path. Rows whose
    time is in ``skip`` of their (measurement, sensor) are read but not delivered."""
    out: list[Item] = []
    seconds: dict[int, bytes] = {}
    areas: dict[Any, bytes] = {}
    for s in series:
        measurement = s["name"]
        sensor_id = (s.get("tags") or {}).get("sensor_id") or ""
        encoder = SeriesEncoder(
            source, measurement, sensor_id, s["columns"], kinds.get(measurement, {}),
            seconds, areas,
        )  # fmt: skip
        out += encoder.rows(s.get("values", []), skip.get((measurement, sensor_id)))
    return out


def _keyed(
    kind: Kind,
    series: list[dict[str, Any]],
    devices: Mapping[str, DeviceInfo],
    kinds: Mapping[str, Mapping[str, str]],
    flt: Filter,
    source: str,
    skip: Mapping[tuple[str, str], set[int]] = _NOTHING,
) -> list[Item]:
    if kind == "readings":  # the query filtered them (types, subdistricts, sensors)
        return _reading_items(series, kinds, source, skip)
    out: list[Item] = []
    for s in series:
        columns, tags = s["columns"], s.get("tags") or {}
        for values in s.get("values", []):
            row = dict(zip(columns, values, strict=True))
            row.update(tags)
            key, ev = to_event(kind, s["name"], row, devices, kinds)
            t = int(row["time"])
            keep = ev is not None and flt.matches(ev.sensor_id, ev.type, ev.subdistrict)
            if keep and ev and t in skip.get((s["name"], ev.sensor_id), ()):
                keep = False
            out.append((t, key, item(ev, source)[2] if keep and ev else None))
    return out


def to_event(
    kind: Kind,
    measurement: str,
    row: dict[str, Any],
    devices: Mapping[str, DeviceInfo],
    quantities: Mapping[str, Iterable[str]],
) -> tuple[str, Event | None]:
    """The row's key, and its event (None: the row is not one we can deliver, e.g. the
    status of a gateway or of a sensor no longer registered)."""
    sensor_id = str(row.get("sensor_id") or "")
    t = int(row["time"])
    if kind == "readings":
        data: dict[str, Any] = {
            "values": {q: row[q] for q in quantities.get(measurement, ()) if row.get(q) is not None}
        }
        if row.get("seq") is not None:
            data["seq"] = row["seq"]
        area = str(row.get("subdistrict") or "")
        return sensor_id, Event(t, sensor_id, kind, sensor_id, measurement, area, data)
    if kind == "status":
        device = devices.get(sensor_id)
        if device is None:
            return sensor_id, None
        data = {"state": row.get("state")}
        ev = Event(t, sensor_id, kind, sensor_id, device.type, device.subdistrict, data)
        return sensor_id, ev
    rule = str(row.get("rule", ""))
    key = f"{sensor_id}/{rule}"
    level = row.get("level")
    data = {
        "rule": rule,
        "change": row.get("kind"),
        "severity": None if row.get("severity") in (None, "none") else row["severity"],
        "level": None if level is None or level < 0 else level,
        "level_name": row.get("level_name") or None,
        "value": row.get("value"),
        "threshold": row.get("threshold"),
        "reading_time": rfc3339_ns(int(row["reading_time"])) if row.get("reading_time") else None,
    }
    type_id, area = str(row.get("type", "")), str(row.get("subdistrict", ""))
    return key, Event(t, key, kind, sensor_id, type_id, area, data)


async def read_page(
    influx: InfluxClient,
    kind: Kind,
    spec: Spec,
    catalogue: Catalogue,
    devices: Mapping[str, DeviceInfo],
    after: Cursor,
    horizon_ns: int,
    limit: int,
    window_ns: int,
    source: str,
    leave_noted: bool = False,
) -> Page:
    """The events of ``kind`` after ``after`` and within ``window_ns`` of it (not past the
    horizon), in (time, key) order, as CloudEvents JSON with ``source``; a series with
    ``limit`` rows cuts the page short. ``leave_noted``: points with a late note are read
    but not delivered (the pusher delivers them from the notes: ``late``)."""
    if horizon_ns <= after.time_ns and after.key == END:
        return Page([], None)
    until = max(min(after.time_ns + window_ns, horizon_ns), after.time_ns)
    q, params = page_queries(kind, spec.filter, catalogue, after, until, limit)
    noting = leave_noted and kind in NOTED
    if noting:
        q += "; " + notes_query(measurements(kind, spec.filter, catalogue))
        params |= notes_params(after.time_ns, until)
    body = await influx.query_body(q, params, method="POST")
    statements = _statement_series(body)
    if after.key == END:
        statements.insert(0, [])  # no statement for the cursor's instant
    same, rest, notes = [*statements, [], [], []][:3]
    skip = noted(notes) if noting else _NOTHING
    kinds = quantity_kinds(catalogue)
    flt = spec.filter
    keyed = []
    if after.key != END:
        keyed = [
            k for k in _keyed(kind, same, devices, kinds, flt, source, skip) if k[1] > after.key
        ]
    for i in range(0, len(rest), SERIES_PER_SLICE):
        keyed += _keyed(kind, rest[i : i + SERIES_PER_SLICE], devices, kinds, flt, source, skip)
        await asyncio.sleep(0)  # let the request on the wire be answered meanwhile
    keyed.sort(key=_time_key)
    kept, upto, cut = _complete_prefix(keyed, rest, limit, Cursor(until, END))
    if upto is not None and upto <= after:
        upto = None
    return Page([k for k in kept if k[2] is not None], upto, len(keyed), cut or until < horizon_ns)


def quantity_kinds(catalogue: Catalogue) -> dict[str, dict[str, str]]:
    """Per measurement, its quantities and their kinds (``float``, ``int``, ...)."""
    return {
        t.measurement: {q.id: q.kind for q in t.quantities.values()}
        for t in catalogue.types.values()
    }


def _complete_prefix(
    keyed: list[Item], rest: list[dict[str, Any]], limit: int, whole: Cursor
) -> tuple[list[Item], Cursor | None, bool]:
    """What is known complete, the cursor after it, and whether a series was cut.

    A series that returned ``limit`` rows may have more from the time of its last row on
    (even at that very time: which series InfluxDB gave first is not ours to choose), so
    nothing from the earliest such time is taken. When that leaves nothing, the cursor moves
    to the start of that instant (key ""): the next read's ``time = $t0`` statement, which
    has no limit, takes the whole instant. With no series cut the whole window was read."""
    cut = []
    for series in rest:
        values = series.get("values", [])
        if len(values) >= limit:
            ti = series["columns"].index("time")
            cut.append(max(int(v[ti]) for v in values))
    if not cut:
        return keyed, whole, False
    edge = min(cut)
    before = [k for k in keyed if k[0] < edge]
    if not before:
        return [], Cursor(edge, ""), True
    return before, Cursor(before[-1][0], before[-1][1]), True


#: Buckets one aggregate read covers at most (then cut to the page limit).
AGGREGATE_BUCKETS_PER_READ = 10


def aggregate_query(
    catalogue: Catalogue, flt: Filter, resolution_s: int
) -> tuple[str, dict[str, ParamValue]]:
    """One statement per sensor type: mean/min/max/count of each numeric quantity (count
    alone for booleans and strings) per sensor and bucket, from the raw readings."""
    statements = []
    params: dict[str, ParamValue] = {}
    where = "".join(f" AND {w}" for w in _where(flt, "aggregates", params))
    for type_id in flt.types or catalogue.types:
        t = catalogue.get(type_id)
        m = check_identifier(t.measurement)
        parts = []
        for q in t.quantities.values():
            name = check_identifier(q.id)
            fns = ("mean", "min", "max", "count") if q.kind in ("float", "int") else ("count",)
            parts += [f'{fn}("{name}") AS "{name}__{fn}"' for fn in fns]
        statements.append(
            f'SELECT {", ".join(parts)} FROM "{m}" WHERE time >= $a AND time < $b{where} '  # noqa: S608
            f'GROUP BY time({int(resolution_s)}s), "sensor_id", "subdistrict" fill(none)'
        )
    return "; ".join(statements), params


async def read_aggregates(
    influx: InfluxClient,
    spec: Spec,
    catalogue: Catalogue,
    after: Cursor,
    now_ns: int,
    settle_ns: int,
    limit: int,
    source: str,
) -> Page:
    """Complete buckets (ended ``settle`` ago) after the cursor: one event per sensor and
    bucket, keyed by sensor id, timed at the bucket's start."""
    assert spec.resolution_s is not None
    r = spec.resolution_s * 1_000_000_000
    start = after.time_ns - after.time_ns % r
    last_end = (now_ns - settle_ns) // r * r  # end of the newest complete bucket
    end = min(start + r * AGGREGATE_BUCKETS_PER_READ, last_end)
    if end <= start:
        return Page([], None)
    q, params = aggregate_query(catalogue, spec.filter, spec.resolution_s)
    params |= {"a": rfc3339_ns(start), "b": rfc3339_ns(end)}
    body = await influx.query_body(q, params, method="POST")
    keyed: list[tuple[int, str, Event]] = []
    for statement in _statement_rows(body):
        for measurement, row in statement:
            t, sensor_id = int(row["time"]), str(row.get("sensor_id", ""))
            if (t, sensor_id) <= (after.time_ns, after.key):
                continue
            values: dict[str, dict[str, Any]] = {}
            for column, v in row.items():
                if "__" in column and v is not None:
                    q_id, fn = column.rsplit("__", 1)
                    values.setdefault(q_id, {})[fn] = v
            data = {
                "resolution": spec.resolution,
                "start": rfc3339_ns(t),
                "end": rfc3339_ns(t + r),
                "values": values,
            }
            ev = Event(t, sensor_id, "aggregates", sensor_id, measurement,
                       str(row.get("subdistrict", "")), data)  # fmt: skip
            keyed.append((t, sensor_id, ev))
    keyed.sort(key=lambda k: (k[0], k[1]))
    if len(keyed) > limit:
        keyed = keyed[:limit]
        return Page([item(e, source) for _, _, e in keyed], Cursor(keyed[-1][0], keyed[-1][1]))
    # the whole range read: next time start at the first bucket not read
    return Page([item(e, source) for _, _, e in keyed], Cursor(end, ""))
