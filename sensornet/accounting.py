"""Per-device accounting from InfluxDB alone: received, stored, rejected by reason, missing.

Readings carry the device's ``seq`` as a field and dead letters keep it too, so the
account is the same whichever ingester handled a reading, and survives restarts. Every
figure of one account comes from one read of raw rows (one InfluxQL statement over the
readings and ``dead_letter`` measurements, bounded by a time window and a row limit):
aggregates computed by separate InfluxDB iterators can disagree while a batch lands. The
seq arithmetic is ``sensornet.seq_account``; the rules are in docs/accounting.md.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sensornet.influx import InfluxClient, check_identifier
from sensornet.liveness import Liveness, liveness
from sensornet.seq_account import SeqAccount, SeqRow, account_seqs
from sensornet.settings import Settings
from sensornet.unknown_keys import MEASUREMENT as UNKNOWN_KEYS

DEAD_LETTER = "dead_letter"  # ingest/deadletter.py writes it; the core only reads it


@dataclass(frozen=True, slots=True)
class Window:
    """``[start_ns, end_ns)``, in InfluxDB's time (the device's own timestamp for a
    reading, the time it was refused for a dead letter)."""

    start_ns: int
    end_ns: int

    @classmethod
    def recent(cls, span_s: float, ahead_s: float = 0.0) -> Window:
        """The last ``span_s`` seconds up to now, and ``ahead_s`` beyond (a device's clock
        may run up to 5 minutes ahead of the platform's, docs/payloads.md)."""
        now = time.time_ns()
        return cls(now - int(span_s * 1e9), now + int(ahead_s * 1e9))


@dataclass
class DeviceAccount:
    sensor_id: str
    window: Window  # what was counted: ``end_ns`` is cut back when rows ran over the limit
    complete: bool = True  # False: more than the row limit in the window asked for
    stored: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unsequenced: int = 0  # received without a seq: counted, not part of the seq account
    seqs: SeqAccount = field(default_factory=SeqAccount)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def received(self) -> int:
        return self.stored + self.rejected_total

    @property
    def missing(self) -> int:
        return self.seqs.missing

    @property
    def duplicates(self) -> int:
        return self.seqs.duplicates

    @property
    def first_seq(self) -> int | None:
        return self.seqs.epochs[0].first_seq if self.seqs.epochs else None

    @property
    def last_seq(self) -> int | None:
        return self.seqs.epochs[-1].last_seq if self.seqs.epochs else None

    def as_dict(self, max_epochs: int = 50) -> dict[str, object]:
        epochs = self.seqs.epochs
        return {
            "sensor_id": self.sensor_id,
            "received": self.received,
            "stored": self.stored,
            "rejected": self.rejected_total,
            "rejected_by_reason": self.rejected,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "resets": self.seqs.resets,
            "wraps": self.seqs.wraps,
            "unplaced": self.seqs.unplaced,
            "unsequenced": self.unsequenced,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "epochs": [e.as_dict() for e in epochs[-max_epochs:]],
            "epochs_total": len(epochs),
            "complete": self.complete,
        }


def account_query(measurement: str, fields: Iterable[str]) -> str:
    """Raw rows of one device from its type's measurement and the dead letters, in one
    statement; ``fields`` (the type's quantities) make readings without a seq count too."""
    extra = "".join(f', "{check_identifier(f)}"' for f in fields if f != "seq")
    return (
        f'SELECT "seq", "payload_bytes", "reason"{extra} '  # noqa: S608 - identifiers checked
        f'FROM "{check_identifier(measurement)}", "{DEAD_LETTER}" '
        'WHERE ("sensor_id" = $id OR "device" = $id) AND time >= $start AND time < $end '
        "ORDER BY time ASC LIMIT $limit"
    )


async def device_account(
    influx: InfluxClient,
    sensor_id: str,
    measurement: str,
    window: Window,
    *,
    fields: Sequence[str] = (),
    max_rows: int = 100_000,
) -> DeviceAccount:
    """The account of ``window``, read once. Each measurement returns at most
    ``max_rows`` rows; past that the window is cut back to the first time that was not
    read, for every measurement alike, and the account says it is incomplete."""
    params: dict[str, str | int] = {
        "id": sensor_id,
        "start": window.start_ns,
        "end": window.end_ns,
        "limit": max_rows + 1,
    }
    series = await influx.query(account_query(measurement, fields), params)
    # up to max_rows of pure-Python arithmetic: off the event loop
    return await asyncio.to_thread(account_from_rows, sensor_id, window, series, max_rows)


def account_from_rows(
    sensor_id: str, window: Window, series: list[dict[str, Any]], max_rows: int
) -> DeviceAccount:
    """The account of the rows InfluxDB returned for ``account_query``."""
    parts: dict[str, list[dict[str, Any]]] = {}
    for s in series:  # a long answer may come as several parts of one series
        parts.setdefault(s["name"], []).append(s)
    end_ns = window.end_ns
    for chunks in parts.values():
        values = [v for chunk in chunks for v in chunk.get("values") or ()]
        if len(values) > max_rows:
            end_ns = min(end_ns, int(values[max_rows][0]))
    account = DeviceAccount(sensor_id, Window(window.start_ns, end_ns), end_ns == window.end_ns)
    reasons: Counter[str] = Counter()
    seq_rows = []
    for name, chunks in parts.items():
        refused = name == DEAD_LETTER
        for chunk in chunks:
            columns = chunk["columns"]
            at_seq, at_reason = columns.index("seq"), columns.index("reason")
            for values in chunk.get("values") or ():
                t = int(values[0])  # rows come in time order
                if t >= end_ns:
                    break
                if refused:
                    reasons[str(values[at_reason])] += 1
                else:
                    account.stored += 1
                seq = values[at_seq]
                if seq is None:
                    account.unsequenced += 1
                else:
                    seq_rows.append(SeqRow(t, int(seq), refused))
    account.rejected = dict(sorted(reasons.items()))
    account.seqs = account_seqs(seq_rows)
    return account


async def unknown_keys_of(influx: InfluxClient, sensor_id: str, window: Window) -> dict[str, int]:
    """Readings of the window stored without a key their type does not know, by key
    (``sensornet.unknown_keys``): the keys a firmware sends that nobody catalogued."""
    series = await influx.query(
        f'SELECT sum("count") AS "count" FROM "{UNKNOWN_KEYS}" '  # noqa: S608 - a constant
        'WHERE "device" = $id AND time >= $start AND time < $end GROUP BY "key"',
        {"id": sensor_id, "start": window.start_ns, "end": window.end_ns},
    )
    out = {}
    for s in series:
        key = (s.get("tags") or {}).get("key", "")
        out[key] = int(s["values"][0][1] or 0)
    return dict(sorted(out.items()))


async def count_stored(influx: InfluxClient, measurements: set[str]) -> int:
    """Readings with a ``seq`` stored across ``measurements``, over all time (each stored
    once: a redelivered reading overwrites itself). A whole-database scan, for tests and
    benchmarks that count what they sent; the API's per-device account is bounded."""
    total = 0
    for m in sorted(measurements):
        series = await influx.query(f'SELECT count("seq") FROM "{check_identifier(m)}"')  # noqa: S608
        if series:
            total += int(series[0]["values"][0][1])
    return total


def settle_margin_ns(settings: Settings) -> int:
    """How long after a time the ingester may still be writing readings stamped before it:
    a reading waits up to a batch interval to be taken, behind up to ``writes in flight``
    batches taken one interval apart; its write may last InfluxDB's timeout before the
    ingester spools it, and a spooled reading shows in ``spool_backlog`` from the
    ingester's next report on."""
    s = settings
    seconds = (
        s.ingest_batch_interval_s * (s.ingest_writes_in_flight + 1)
        + s.influx_timeout_s
        + s.ingest_report_interval_s
    )
    return int(seconds * 1e9)


SPOOL_BACKLOG = (
    'SELECT last("spool_readings") FROM "platform_ingest" WHERE time > now() - 5m '
    'GROUP BY "ingester"'
)


async def spool_backlog(influx: InfluxClient) -> int:
    """Readings the ingesters last reported waiting in their disk spools (they land later,
    with their own timestamps, possibly inside a window already counted)."""
    total = 0
    for s in await influx.query(SPOOL_BACKLOG):
        value = s["values"][0][1]
        total += int(value or 0)
    return total


@dataclass(frozen=True)
class DeviceLiveness:
    last_seen_ns: int | None
    status: str | None  # the device's own last word: online / offline (its Last Will)
    liveness: Liveness


async def device_liveness(
    influx: InfluxClient, sensor_id: str, measurement: str, interval_s: float, now_ns: int
) -> DeviceLiveness:
    m = check_identifier(measurement)
    params = {"id": sensor_id}
    last = await influx.query(
        f'SELECT * FROM "{m}" WHERE "sensor_id" = $id ORDER BY time DESC LIMIT 1',  # noqa: S608
        params,
    )
    last_seen = int(last[0]["values"][0][0]) if last else None
    status = await influx.query(
        'SELECT last("state") FROM "device_status" WHERE "sensor_id" = $id', params
    )
    state, said_at = (status[0]["values"][0][1], status[0]["values"][0][0]) if status else (None, 0)
    said_offline = state == "offline" and (last_seen is None or said_at >= last_seen)
    if said_offline and last_seen is None:
        last_seen = said_at
    return DeviceLiveness(
        last_seen, state, liveness(last_seen, interval_s, now_ns, said_offline=said_offline)
    )
