"""CloudEvents JSON made straight from InfluxDB's rows (pure).

The pusher's hot path is readings: thousands of rows per read, each to become one event of
a batch body. Building an ``Event``, then a CloudEvent dict, then encoding the batch cost
3-8 µs of Python per event; here the parts that are the same for a whole series (sensor id,
type, the envelope's constant attributes) are encoded once, and each row is one
``bytes %`` formatting of its time, subdistrict and values: about a third of the cost,
with the same JSON (``tests/test_northbound_pure.py`` checks both against each other).
An item is ``(time_ns, key, event JSON)``; a batch body is the items' JSON joined in
brackets. Other kinds (status, alarms, aggregates: few events) are encoded from their
``Event`` with orjson."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from sensornet.northbound.envelope import TYPES, cloud_event
from sensornet.northbound.events import Event, second_text

#: One event of a stream: its time, its key, its CloudEvent as JSON (None: a row that is
#: read, and moves the cursor, but is not delivered).
Item = tuple[int, str, bytes | None]

_NUMERIC = frozenset({"float", "int"})


def item(event: Event, source: str) -> Item:
    return event.time_ns, event.key, orjson.dumps(cloud_event(event, source))


def batch(items: Sequence[Item]) -> bytes:
    """The body of one request: a JSON array of the items' events (``None`` left out)."""
    return b"[" + b",".join([body for _, _, body in items if body is not None]) + b"]"


class SeriesEncoder:
    """Readings of one InfluxDB series (one sensor): its constant parts encoded once."""

    def __init__(
        self,
        source: str,
        measurement: str,
        sensor_id: str,
        columns: Sequence[str],
        kinds: Mapping[str, str],
        seconds: dict[int, bytes],
        areas: dict[Any, bytes],
    ) -> None:
        """``kinds``: quantity id → catalogue kind, for the quantities of this type;
        ``seconds`` / ``areas``: caches shared by the series of one read."""
        present = [(c, i) for i, c in enumerate(columns) if c in kinds]
        self.names = [c for c, _ in present]
        self.numeric = all(kinds[c] in _NUMERIC for c in self.names)
        indices = [i for _, i in present]
        pick: Callable[[Any], Any] = operator.itemgetter(*indices) if indices else lambda _: ()
        self.values: Callable[[list[Any]], tuple[Any, ...]] = (
            (lambda row: (pick(row),)) if len(indices) == 1 else pick
        )
        self.ti = columns.index("time")
        self.di = columns.index("subdistrict") if "subdistrict" in columns else None
        self.qi = columns.index("seq") if "seq" in columns else None
        self.key = sensor_id
        quoted_id = orjson.dumps(f"readings:{sensor_id}:")
        self.head = b"{" + b'"specversion":"1.0","id":' + quoted_id[:-1]
        self.middle = (
            b'","source":' + orjson.dumps(source)
            + b',"type":' + orjson.dumps(TYPES["readings"])
            + b',"subject":' + orjson.dumps(sensor_id)
            + b',"time":"'
        )  # fmt: skip
        self.tail = (
            b'Z","datacontenttype":"application/json","sensortype":'
            + orjson.dumps(measurement)
            + b',"subdistrict":'
        )
        # numbers as Python writes them (shortest round trip, as orjson): one % per row
        self.numbers = b'{"' + b'":%a,"'.join(n.encode() for n in self.names) + b'":%a}'
        if not self.names:
            self.numbers = b"{}"
        self.seconds, self.areas = seconds, areas

    def rows(self, rows: Iterable[list[Any]], skip: set[int] | None = None) -> list[Item]:
        """The rows' items; those timed in ``skip`` are read but not delivered (None)."""
        head, middle, tail, key = self.head, self.middle, self.tail, self.key
        seconds, areas = self.seconds, self.areas
        ti, di, qi, values = self.ti, self.di, self.qi, self.values
        fast = self.numbers if self.numeric else None
        out: list[Item] = []
        for row in rows:
            t = row[ti]
            if skip and t in skip:
                out.append((t, key, None))
                continue
            sec = t // 1_000_000_000
            second = seconds.get(sec)
            if second is None:
                second = seconds[sec] = second_text(sec).encode()
            area = "" if di is None else row[di] or ""
            area_json = areas.get(area)
            if area_json is None:
                area_json = areas[area] = orjson.dumps(area)
            found = values(row)
            if fast is not None and None not in found:
                data = fast % found
            else:
                data = orjson.dumps(
                    {n: v for n, v in zip(self.names, found, strict=True) if v is not None}
                )
            seq = None if qi is None else row[qi]
            out.append((
                t,
                key,
                b'%b%d%b%b.%09d%b%b,"data":{"values":%b%b}}' % (
                    head, t, middle, second, t - sec * 1_000_000_000, tail, area_json, data,
                    b"" if seq is None else b',"seq":%a' % (seq,),
                ),
            ))  # fmt: skip
        return out
