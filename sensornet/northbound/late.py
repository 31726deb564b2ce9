"""Late points: readings and status messages stored after the pusher's cursor may have
passed their time (a device's backfill, a gateway's backlog, the ingester's spool replayed
after an InfluxDB outage, an uplink the network server delivered late).

The pusher reads each stream forward in the points' own time, ``settle`` behind now, so a
point stored later than that behind its time would be skipped. The ingester therefore
writes, in the same InfluxDB request as such a point, a **note** (measurement
``northbound_late``, stamped when written): which measurement, sensor and time. Notes are
a stream of their own, read forward in write time like alarm changes; every point with a
note is delivered from the note's stream (read again from its measurement, so it is the
same event with the same id), and the regular read leaves it out, so each point takes
exactly one of the two paths and is counted once (docs/northbound.md, "Late points").

A point is noted when its time is older than half the settle time when its write starts
(readings: ``SENSORNET_NORTHBOUND_SETTLE_S`` / 2, status: 0.5 s): the cursor cannot have
passed a point younger than that before the write ends, unless the write takes longer
than the other half; the note's stamp is then still at least half the settle time after
the point, which is what lets the regular read find notes cheaply (``notes_query``).

Notes are written only for points some subscription could be owed (``owed``): a point
whose kind no subscription takes, or older than the start of every subscription that takes
it, is owed to none, so a backlog ingested while nobody subscribes costs InfluxDB no second
point per reading. The ingester reads the subscriptions every ``OWED_CHECK_S``; a view
older than ``OWED_MAX_AGE_S`` (the registry unreadable, or not read yet) notes every late
point, as before. A subscription created meanwhile is covered by the pusher: it waits
``OWED_MAX_AGE_S`` plus the notes' delay before its first read when its start is early
enough to be owed a point an ingester left unnoted (``creation_hold_s``; docs/northbound.md,
"Late points", "Only while someone subscribes")."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sensornet.errors import InfluxError
from sensornet.influx import ParamValue
from sensornet.lineprotocol import escape_name
from sensornet.northbound.events import Cursor, rfc3339_ns

LATE_MEASUREMENT = "northbound_late"
STATUS_MEASUREMENT = "device_status"
#: Status points are stamped on arrival and pushed 1 s after (``worker``).
STATUS_SETTLE_NS = 1_000_000_000
#: Notes are read ``SENSORNET_INFLUX_TIMEOUT_S`` (after which the ingester's write gives
#: up) plus this long after their stamp, so the writes that carry them have ended.
NOTE_MARGIN_S = 5.0
_DIGITS = 19  # nanosecond timestamps from 2001 to 2286
#: How often the ingester reads which subscriptions exist, and how old that view may be
#: before it notes every late point again (the registry unreadable: fail safe).
OWED_CHECK_S = 0.5
OWED_MAX_AGE_S = 2.0
_NEVER = 2**63  # a point time no point reaches: nothing owed


class LateNotes:
    """The ingester's side: which lines of a write are late, and the notes that say so."""

    def __init__(self, readings: Iterable[str], settle_s: float, ingester: str) -> None:
        """``readings``: the measurements of the catalogue's types."""
        self.age_ns = {m: int(settle_s * 1e9) // 2 for m in readings}
        self.age_ns[STATUS_MEASUREMENT] = STATUS_SETTLE_NS // 2
        self.youngest = min(self.age_ns.values())
        self.tag = escape_name("tag value", ingester)
        self.last_stamp = 0
        self._readings = [m for m in self.age_ns if m != STATUS_MEASUREMENT]
        #: the earliest point time owed per measurement (``_NEVER``: none), and until when
        #: (monotonic) that view holds; before the first view, and after it expires, every
        #: late point is noted
        self._since: dict[str, int] = dict.fromkeys(self.age_ns, _NEVER)
        self._fresh_until = float("-inf")

    def owed(self, starts: Mapping[str, int], read_at: float) -> None:
        """The registry's subscriptions as read at ``read_at`` (``time.monotonic()`` when
        the read began): the earliest ``start`` per kind (``readings``, ``status``) among
        the subscriptions, paused ones included, that take that kind."""
        self._since = dict.fromkeys(self._readings, starts.get("readings", _NEVER))
        self._since[STATUS_MEASUREMENT] = starts.get("status", _NEVER)
        self._fresh_until = read_at + OWED_MAX_AGE_S

    def notes(self, lines: Sequence[str], now_ns: int, noted_at: int | None = None) -> list[str]:
        """The notes for the late ones among ``lines`` (line protocol with timestamps),
        about to be written at ``now_ns``; with ``noted_at``, only those not already late
        then (a write that took long: what became late meanwhile). About 0.1 µs a line
        that is not late."""
        cut = str(now_ns - self.youngest)
        if len(cut) != _DIGITS:
            return []
        if time.monotonic() > self._fresh_until:
            since: Mapping[str, int] = {}  # no fresh view of the subscriptions: all owed
        elif all(t == _NEVER for t in self._since.values()):
            return []  # nobody subscribes to readings or status
        else:
            since = self._since
        found: list[tuple[str, str, int]] = []
        for line in lines:
            if line[-_DIGITS:] > cut and line[-_DIGITS - 1] == " ":
                continue  # the common case: younger than any age that makes a point late
            head, _, rest = line.partition(",")
            age = self.age_ns.get(head)
            if age is None or not rest:
                continue
            t = int(line[line.rindex(" ") + 1 :])
            if t > now_ns - age or (noted_at is not None and t <= noted_at - age):
                continue
            if t < since.get(head, 0):
                continue  # older than every start of a subscription taking it: owed to none
            sensor = _tag(rest, "sensor_id")
            if sensor is not None:
                found.append((head, sensor, t))
        stamp = max(now_ns, self.last_stamp + 1)
        self.last_stamp = stamp + len(found)
        return [
            f"{LATE_MEASUREMENT},ingester={self.tag},measurement={m},sensor_id={s} "
            f"point_time={t}i {stamp + i}"
            for i, (m, s, t) in enumerate(found)
        ]


def _tag(tags_and_rest: str, name: str) -> str | None:
    """A tag's value as written (still escaped) from ``tag=v,...`` up to the fields."""
    prefix = name + "="
    i = 0
    while True:
        if tags_and_rest.startswith(prefix, i):
            j = i + len(prefix)
            k = j
            while k < len(tags_and_rest) and tags_and_rest[k] not in ", ":
                k += 2 if tags_and_rest[k] == "\\" else 1
            return tags_and_rest[j:k]
        while i < len(tags_and_rest) and tags_and_rest[i] not in ", ":  # the next tag
            i += 2 if tags_and_rest[i] == "\\" else 1
        if i >= len(tags_and_rest) or tags_and_rest[i] == " ":
            return None
        i += 1


def creation_hold_s(start_ns: int, created_ns: int, settle_s: float, note_settle_s: float) -> float:
    """How long after its creation a subscription's first read waits (0: not at all).

    An ingester learns of a new subscription within ``OWED_MAX_AGE_S``; until then it may
    write late points unnoted, all of them older than ``created + OWED_MAX_AGE_S -
    settle/2`` (a point is late when over half the settle time old as its write starts or
    ends). A subscription starting later than that is owed none of them. One starting
    earlier (a stated ``start`` in the past, or a settle time shorter than twice the lag)
    could be: its reads wait until every write begun before the ingesters knew has ended
    (``note_settle_s``: the ingester's write timeout plus ``NOTE_MARGIN_S``), so each such
    point is stored before any cursor can pass it."""
    lag_ns = int(OWED_MAX_AGE_S * 1e9)
    if start_ns >= created_ns + lag_ns - int(settle_s * 1e9) // 2:
        return 0.0
    return OWED_MAX_AGE_S + note_settle_s


@dataclass(frozen=True, slots=True)
class Note:
    stamp: int
    key: str  # unique within one stamp: the note's series
    measurement: str
    sensor_id: str
    point_time: int

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.stamp, self.key)


def notes_page_query(
    after: Cursor, horizon_ns: int, limit: int
) -> tuple[str, dict[str, ParamValue]]:
    """Notes from the cursor's instant on (the caller drops those not after it), in time."""
    q = (
        'SELECT "point_time", "measurement", "sensor_id", "ingester" '  # noqa: S608
        f'FROM "{LATE_MEASUREMENT}" WHERE time >= $t0 AND time <= $h LIMIT {int(limit)}'
    )
    return q, {"t0": rfc3339_ns(after.time_ns), "h": rfc3339_ns(horizon_ns)}


def parse_notes(body: bytes, after: Cursor, limit: int) -> tuple[list[Note], bool]:
    """The notes after ``after`` in (stamp, key) order, and whether the read was cut at
    ``limit`` (then the notes of its last instant are left for the next read, unless that
    instant is all there is)."""
    rows = _rows(body)
    notes = []
    for r in rows:
        key = f"{r['measurement']}/{r['sensor_id']}/{r.get('ingester') or ''}"
        note = Note(int(r["time"]), key, str(r["measurement"]), str(r["sensor_id"]),
                    int(r["point_time"]))  # fmt: skip
        if note.cursor > after:
            notes.append(note)
    notes.sort(key=lambda n: (n.stamp, n.key))
    full = len(rows) >= limit
    if full and notes and notes[0].stamp != notes[-1].stamp:
        last = notes[-1].stamp
        notes = [n for n in notes if n.stamp != last]
    return notes, full


def notes_query(measurements: Sequence[str]) -> str:
    """The statement a regular read adds to find the points it must leave to the notes:
    notes of its measurements for point times in ``[first, last]``. A note is stamped at
    least half the settle time after its point, so notes stamped from ``first`` on are
    all there can be (bound parameters ``$nf``/``$nl``: ``notes_params``)."""
    of = " OR ".join(f"\"measurement\" = '{m}'" for m in measurements)
    return (
        f'SELECT "point_time", "measurement", "sensor_id" FROM "{LATE_MEASUREMENT}" '  # noqa: S608
        f'WHERE time >= $nfs AND "point_time" >= $nf AND "point_time" <= $nl AND ({of})'
    )


def notes_params(first_ns: int, last_ns: int) -> dict[str, ParamValue]:
    return {"nfs": rfc3339_ns(first_ns), "nf": first_ns, "nl": last_ns}


def noted(series: list[dict[str, Any]]) -> dict[tuple[str, str], set[int]]:
    """``notes_query``'s answer: point times per (measurement, sensor id)."""
    out: dict[tuple[str, str], set[int]] = {}
    for s in series:
        cols = s["columns"]
        ti, mi, si = cols.index("point_time"), cols.index("measurement"), cols.index("sensor_id")
        for v in s.get("values", []):
            out.setdefault((str(v[mi]), str(v[si])), set()).add(int(v[ti]))
    return out


def _rows(body: bytes) -> list[dict[str, Any]]:
    results = orjson.loads(body).get("results", [])
    out: list[dict[str, Any]] = []
    for result in results:
        if "error" in result:
            raise InfluxError(f"InfluxQL error: {result['error']}", 200, result["error"])
        for s in result.get("series", []):
            cols = s["columns"]
            out += [dict(zip(cols, v, strict=True)) for v in s.get("values", [])]
    return out
