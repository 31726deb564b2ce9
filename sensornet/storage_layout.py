"""Retention policies, continuous queries and resolution choice: how long data lives and
at which resolution a query reads it.

Three retention policies per database:

``raw``     every reading as the ingester wrote it; DEFAULT policy, so writes without
            ``rp=`` land here; kept ``SENSORNET_INFLUX_RAW_RETENTION`` (30 d).
``agg_1m``  1-minute ``<q>_mean``/``_min``/``_max``/``_count`` per sensor; kept long.
``agg_1h``  the same per hour; kept longest (INF by default).

InfluxDB 1.x continuous queries fill the aggregates (``RESAMPLE FOR`` re-computes recent
windows so readings replayed from the ingester's spool are still counted). Both CQs read
``raw`` so a 1-hour mean is the true mean, not a mean of minute means. InfluxDB 2.x/3.x
have no CQs; :func:`aggregate_statements` gives the same statements to run from a task or
cron (``backfill_aggregates`` runs them over any window; docs/storage.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sensornet.catalogue import Catalogue, Quantity, SensorType
from sensornet.errors import ConfigError
from sensornet.influx import InfluxClient, check_identifier
from sensornet.settings import Settings

RAW_RP = "raw"
AGGREGATES = ("mean", "min", "max", "count")
_DURATION = re.compile(r"^(INF|(\d+)([mhdw]))$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Resolution:
    """A stored resolution: its retention policy and step (0 = raw, the sensor's own)."""

    name: str
    rp: str
    step_s: int


RAW = Resolution("raw", RAW_RP, 0)
MINUTE = Resolution("1m", "agg_1m", 60)
HOUR = Resolution("1h", "agg_1h", 3600)


@lru_cache(maxsize=64)
def duration_s(text: str) -> float:
    """``30d`` → seconds; ``INF`` → infinity. Refuses anything InfluxQL would not take."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"retention {text!r}: use INF or <n>m|h|d|w, e.g. 30d")
    if m.group(1) == "INF":
        return float("inf")
    return int(m.group(2)) * _UNIT_S[m.group(3)]


def retentions(settings: Settings) -> dict[str, str]:
    return {
        RAW.rp: settings.influx_raw_retention,
        MINUTE.rp: settings.influx_1m_retention,
        HOUR.rp: settings.influx_1h_retention,
    }


def aggregated(quantity: Quantity) -> tuple[str, ...]:
    """Aggregates kept for a quantity: InfluxQL has no mean/min/max of booleans or text."""
    return AGGREGATES if quantity.kind in ("float", "int") else ("count",)


def aggregate_select(database: str, sensor_type: SensorType, target: Resolution) -> str:
    """``SELECT … INTO`` one resolution from raw, without a time condition (the CQ adds it)."""
    db, m = check_identifier(database), check_identifier(sensor_type.measurement)
    parts = [
        f'{a}("{check_identifier(q.id)}") AS "{q.id}_{a}"'
        for q in sensor_type.quantities.values()
        for a in aggregated(q)
    ]
    return (
        f'SELECT {", ".join(parts)} INTO "{db}"."{target.rp}"."{m}" '  # noqa: S608
        f'FROM "{db}"."{RAW_RP}"."{m}"'
    )


def hour_refresh_checked(text: str) -> str:
    """``SENSORNET_INFLUX_1H_REFRESH``: whole minutes from 1m to 60m (or 1h)."""
    m = _DURATION.match(text)
    if not m or m.group(1) == "INF" or not 60 <= duration_s(text) <= 3600:
        raise ConfigError(f"hourly aggregate refresh {text!r}: use 1m to 60m, e.g. 5m")
    return text


def cq_name(sensor_type: SensorType, target: Resolution) -> str:
    return f"cq_{target.name}_{sensor_type.id}"


def continuous_query(
    database: str, sensor_type: SensorType, target: Resolution, hour_refresh: str
) -> str:
    """The minute CQ runs each minute over the last 10; the hourly one every
    ``hour_refresh`` over the last 2 hours, which includes the current hour: run more often
    than its GROUP BY interval, a CQ also writes the interval still in progress, and
    overwrites it until it ends (docs/storage.md)."""
    if target is MINUTE:
        resample, step = "RESAMPLE FOR 10m", "1m"
    else:
        resample, step = f"RESAMPLE EVERY {hour_refresh_checked(hour_refresh)} FOR 2h", "1h"
    return (
        f'CREATE CONTINUOUS QUERY "{cq_name(sensor_type, target)}" ON "{database}" '
        f"{resample} BEGIN {aggregate_select(database, sensor_type, target)} "
        f"GROUP BY time({step}), * END"
    )


def aggregate_statements(
    database: str,
    catalogue: Catalogue,
    start: datetime,
    end: datetime,
    targets: tuple[Resolution, ...] = (MINUTE, HOUR),
) -> list[str]:
    """The CQs' work over ``[start, end)`` as plain statements (backfill, or 2.x/3.x cron)."""
    out = []
    for sensor_type in catalogue.types.values():
        for target in targets:
            step = "1m" if target is MINUTE else "1h"
            out.append(
                f"{aggregate_select(database, sensor_type, target)} "
                f"WHERE time >= '{start.isoformat()}' AND time < '{end.isoformat()}' "
                f"GROUP BY time({step}), *"
            )
    return out


async def apply_storage_layout(
    influx: InfluxClient,
    settings: Settings,
    catalogue: Catalogue,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Create the database, retention policies and CQs; idempotent, safe on every start.

    Changed retention durations are applied with ALTER; CQs cannot be altered in InfluxDB
    1.x, so each is dropped and created again (a catalogue change updates them).
    ``progress(done, total)`` after each step (the CLI's bar)."""
    db = check_identifier(settings.influx_db)
    for text in retentions(settings).values():
        duration_s(text)
    hour_refresh_checked(settings.influx_1h_refresh)
    total = 2 + len(retentions(settings)) + 2 * len(catalogue.types)
    done = 0

    def did() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    await influx.create_database(db)
    did()
    existing = {
        row[0]
        for s in await influx.query(f'SHOW RETENTION POLICIES ON "{db}"')
        for row in s.get("values", [])
    }
    for rp, duration in retentions(settings).items():
        verb = "ALTER" if rp in existing else "CREATE"
        default = " DEFAULT" if rp == RAW_RP else ""
        replication = "" if verb == "ALTER" else " REPLICATION 1"
        await influx.query(
            f'{verb} RETENTION POLICY "{rp}" ON "{db}" DURATION {duration}{replication}{default}',
            method="POST",
        )
        did()
    cqs = await _continuous_queries(influx, db)
    did()
    for sensor_type in catalogue.types.values():
        for target in (MINUTE, HOUR):
            name = cq_name(sensor_type, target)
            if name in cqs:
                await influx.query(f'DROP CONTINUOUS QUERY "{name}" ON "{db}"', method="POST")
            await influx.query(
                continuous_query(db, sensor_type, target, settings.influx_1h_refresh),
                method="POST",
            )
            did()


async def _continuous_queries(influx: InfluxClient, db: str) -> set[str]:
    series = await influx.query("SHOW CONTINUOUS QUERIES")
    return {row[0] for s in series if s.get("name") == db for row in s.get("values") or []}


BACKFILL_WINDOW = timedelta(days=1)


def backfill_windows(
    start: datetime, end: datetime, size: timedelta = BACKFILL_WINDOW
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at multiples of ``size`` since the epoch (UTC), so a long
    backfill reports progress window by window. The cuts fall on whole hours (``size``
    is a whole number of hours), so no 1m or 1h bucket is split between two windows and
    the result is the same as one statement over the whole range."""
    if size % timedelta(hours=1) or size <= timedelta(0):
        raise ConfigError(f"backfill window {size} is not a whole number of hours")
    epoch = datetime(1970, 1, 1, tzinfo=UTC if start.tzinfo else None)
    out = []
    lo = start
    while lo < end:
        cut = epoch + ((lo - epoch) // size + 1) * size
        hi = min(cut, end)
        out.append((lo, hi))
        lo = hi
    return out


async def backfill_aggregates(
    influx: InfluxClient,
    catalogue: Catalogue,
    start: datetime,
    end: datetime,
    targets: tuple[Resolution, ...] = (MINUTE, HOUR),
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Compute the 1m/1h aggregates of a past window (CQs only see recent data), a day
    at a time; ``progress(done, total)`` after each statement (the CLI's bar)."""
    windows = backfill_windows(start, end)
    total = len(windows) * len(catalogue.types) * len(targets)
    done = 0
    for lo, hi in windows:
        for statement in aggregate_statements(influx.database, catalogue, lo, hi, targets):
            await influx.query(statement, method="POST")
            done += 1
            if progress is not None:
                progress(done, total)


def choose_resolution(
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    interval_s: float,
    raw_retention_s: float,
    minute_retention_s: float = float("inf"),
    step_s: int | None = None,
    max_points: int = 2000,
) -> Resolution:
    """The resolution to read ``[start, end]`` from.

    With a requested ``step_s`` (downsampling): the coarsest stored resolution whose step
    divides it, so the answer is exact and cheap. Without: the finest resolution that
    keeps the answer within ``max_points`` per series. Either way, a resolution whose
    retention no longer covers ``start`` is never chosen.
    """
    age_s = (now - start).total_seconds()
    usable = [
        r
        for r, kept in ((RAW, raw_retention_s), (MINUTE, minute_retention_s), (HOUR, float("inf")))
        if age_s <= kept
    ] or [HOUR]
    if step_s is not None:
        dividing = [r for r in usable if r.step_s == 0 or step_s % r.step_s == 0]
        return dividing[-1] if dividing else usable[0]
    span_s = max((end - start).total_seconds(), 0.0)
    for r in usable:
        if span_s / (r.step_s or interval_s) <= max_points:
            return r
    return usable[-1]
