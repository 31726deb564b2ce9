"""One event as the pusher carries it, its place in a stream, and the alarm events the
alarm runner writes for it (pure).

A stream is ordered by ``(time_ns, key)``; a cursor is the last such pair delivered. The
key is unique within one time (InfluxDB keeps one point per series and time), so an event
id made of the same parts is stable: reading it again after a crash yields the same ids,
which is what lets a receiver drop the duplicates of a batch sent but not recorded."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensornet.lineprotocol import encode_point
from sensornet.northbound.spec import Kind

#: The measurement the alarm runner writes one point to per alarm change, stamped when
#: the runner decided it (so a cursor over write time sees it at once); a change written
#: later (retried after an InfluxDB failure, a slow write) keeps its stamp and gets a late
#: note (``alarms.outbox``).
ALARM_EVENT_MEASUREMENT = "alarm_event"


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    time_ns: int
    key: str = ""


@dataclass(slots=True)
class Event:
    """Not frozen: a frozen dataclass's ``__init__`` (``object.__setattr__`` per field)
    was a third of the pusher's time per event."""

    time_ns: int
    key: str
    kind: Kind
    sensor_id: str
    type: str
    subdistrict: str
    data: dict[str, Any]

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.time_ns, self.key)

    @property
    def id(self) -> str:
        resolution = self.data["resolution"] if self.kind == "aggregates" else None
        return event_id(self.kind, self.key, self.time_ns, resolution)


def event_id(kind: Kind, key: str, time_ns: int, resolution: str | None = None) -> str:
    """An event's id: the same whenever it is read (aggregates: one bucket start has one
    event per resolution)."""
    if kind == "aggregates":
        return f"aggregates:{resolution}:{key}:{time_ns}"
    return f"{kind}:{key}:{time_ns}"


def rfc3339_ns(ns: int) -> str:
    """Always nine fraction digits: equal width, so text order is time order."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{second_text(seconds)}.{frac:09d}Z"


@functools.lru_cache(maxsize=4096)
def second_text(seconds: int) -> str:
    """Events come in time order, many within one second: format each second once."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def alarm_event_line(
    sensor_id: str,
    rule_id: str,
    type_id: str,
    subdistrict: str,
    severity: str,
    kind: str,
    level: int | None,
    level_name: str,
    value: float,
    threshold: float | None,
    reading_ns: int,
    at_ns: int,
) -> str:
    """One alarm change as a point: ``kind`` raised / changed / cleared."""
    fields: dict[str, float | int | str | bool] = {
        "kind": kind,
        "level": -1 if level is None else level,
        "level_name": level_name,
        "value": float(value),
        "reading_time": reading_ns,
    }
    if threshold is not None:
        fields["threshold"] = float(threshold)
    tags = {
        "sensor_id": sensor_id,
        "rule": rule_id,
        "type": type_id,
        "subdistrict": subdistrict,
        "severity": severity or "none",
    }
    return encode_point(ALARM_EVENT_MEASUREMENT, tags, fields, at_ns)
