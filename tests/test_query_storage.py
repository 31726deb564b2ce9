"""Retention policies, continuous queries and the resolution choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from query_fixtures import write_history
from support import wait_until

from sensornet.catalogue import load_catalogue
from sensornet.errors import ConfigError
from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from sensornet.storage_layout import (
    HOUR,
    MINUTE,
    RAW,
    apply_storage_layout,
    backfill_aggregates,
    choose_resolution,
    duration_s,
)
from wiring.parts import default_fleet

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
DAY = 86400.0


async def test_layout_creates_policies_and_queries_idempotently(
    settings: Settings, influx: InfluxClient
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    await apply_storage_layout(influx, settings, catalogue)  # second start: no error
    rps = {r["name"]: r for r in rows(await influx.query("SHOW RETENTION POLICIES"))}
    assert rps["raw"]["duration"] == "720h0m0s" and rps["raw"]["default"] is True
    assert rps["agg_1m"]["duration"] == "9600h0m0s"
    assert rps["agg_1h"]["duration"] == "0s"  # INF
    cqs = [
        row[0]
        for s in await influx.query("SHOW CONTINUOUS QUERIES")
        if s["name"] == settings.influx_db
        for row in s.get("values") or []
    ]
    assert sorted(cqs) == sorted(f"cq_{r}_{t}" for t in catalogue.types for r in ("1m", "1h"))


async def test_changed_retention_is_altered(settings: Settings, influx: InfluxClient) -> None:
    await apply_storage_layout(influx, settings, load_catalogue())
    shorter = settings.model_copy(update={"influx_raw_retention": "7d"})
    await apply_storage_layout(influx, shorter, load_catalogue())
    rps = {r["name"]: r for r in rows(await influx.query("SHOW RETENTION POLICIES"))}
    assert rps["raw"]["duration"] == "168h0m0s"


async def test_backfill_aggregates_mean_min_max_count(
    settings: Settings, influx: InfluxClient
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = [d for d in default_fleet(60) if d.type == "air_quality"][:2]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await write_history(influx, catalogue, fleet, hours=2, end=end)
    await backfill_aggregates(influx, catalogue, end - timedelta(hours=2), end)
    raw = rows(
        await influx.query(
            'SELECT mean("pm25"), min("pm25"), max("pm25"), count("pm25") FROM "raw"."air_quality"'
            " WHERE sensor_id = $s AND time >= $a AND time < $b",
            {"s": fleet[0].id, "a": (end - timedelta(hours=1)).isoformat(), "b": end.isoformat()},
        )
    )[0]
    hourly = rows(
        await influx.query(
            'SELECT * FROM "agg_1h"."air_quality" WHERE sensor_id = $s AND time = $a',
            {"s": fleet[0].id, "a": (end - timedelta(hours=1)).isoformat()},
        )
    )[0]
    assert hourly["pm25_mean"] == pytest.approx(raw["mean"])
    assert hourly["pm25_min"] == raw["min"] and hourly["pm25_max"] == raw["max"]
    assert hourly["pm25_count"] == raw["count"] == 60
    assert hourly["subdistrict"] == fleet[0].subdistrict  # tags kept (GROUP BY *)
    minutes = rows(
        await influx.query(
            'SELECT count("pm25_count") FROM "agg_1m"."air_quality" WHERE sensor_id = $s',
            {"s": fleet[0].id},
        )
    )
    assert minutes[0]["count"] == 120


def test_duration_parsing() -> None:
    assert duration_s("30d") == 30 * DAY
    assert duration_s("INF") == float("inf")
    with pytest.raises(ConfigError):
        duration_s("30 days; DROP DATABASE x")


@pytest.mark.parametrize(
    ("span", "step", "expected"),
    [
        (timedelta(hours=1), None, RAW),  # 60 raw points
        (timedelta(days=1), None, RAW),  # 1440 raw points at 60 s
        (timedelta(days=7), None, HOUR),  # 10080 raw or minute points: too many
        (timedelta(hours=30), None, RAW),  # 1800 raw points: raw is as cheap as minutes
        (timedelta(days=90), None, HOUR),
        (timedelta(days=7), 3600, HOUR),  # requested hourly: read the hourly policy
        (timedelta(days=7), 900, MINUTE),  # 15 min: minutes divide it
        (timedelta(hours=1), 30, RAW),  # finer than any aggregate
        (timedelta(hours=1), 90, RAW),  # 90 s is no multiple of 60 s
    ],
)
def test_choose_resolution(span: timedelta, step: int | None, expected: object) -> None:
    got = choose_resolution(
        NOW - span, NOW, NOW, interval_s=60, raw_retention_s=30 * DAY, step_s=step
    )
    assert got == expected


def test_choose_resolution_respects_retention() -> None:
    start = NOW - timedelta(days=40)
    got = choose_resolution(
        start, start + timedelta(hours=1), NOW, interval_s=60, raw_retention_s=30 * DAY
    )
    assert got == MINUTE  # raw is gone for that hour
    old = NOW - timedelta(days=500)
    got = choose_resolution(
        old,
        old + timedelta(hours=1),
        NOW,
        interval_s=60,
        raw_retention_s=30 * DAY,
        minute_retention_s=400 * DAY,
    )
    assert got == HOUR


async def test_continuous_query_fills_minute_aggregates(
    settings: Settings, influx: InfluxClient
) -> None:
    """The real CQ, not the backfill: InfluxDB runs it at the next minute boundary and,
    with RESAMPLE FOR 10m, covers the minutes before (so this waits up to about a minute)."""
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = [d for d in default_fleet(30) if d.type == "noise"][:1]
    await write_history(influx, catalogue, fleet, hours=0.1, step_s=10)

    async def aggregated() -> list[dict[str, Any]]:
        return rows(
            await influx.query(
                'SELECT "laeq_mean", "laeq_count" FROM "agg_1m"."noise" WHERE sensor_id = $s',
                {"s": fleet[0].id},
            )
        )

    found = await wait_until(aggregated, timeout_s=120, interval_s=1)
    assert all(r["laeq_count"] in (1, 2, 3, 4, 5, 6) for r in found)
    assert all(50 <= r["laeq_mean"] <= 75 for r in found)


async def test_continuous_query_keeps_the_current_hour(
    settings: Settings, influx: InfluxClient
) -> None:
    """The real hourly CQ, refreshed every minute here (every 5 by default): the hour in
    progress gets its aggregate long before it ends (this waits up to about a minute)."""
    catalogue = load_catalogue()
    await apply_storage_layout(
        influx, settings.model_copy(update={"influx_1h_refresh": "1m"}), catalogue
    )
    fleet = [d for d in default_fleet(30) if d.type == "noise"][:1]
    written_at = datetime.now(UTC)
    await write_history(influx, catalogue, fleet, hours=0.05, step_s=10)
    hour = written_at.replace(minute=0, second=0, microsecond=0)

    async def current_hour() -> list[dict[str, Any]]:
        return rows(
            await influx.query(
                'SELECT "laeq_mean", "laeq_count" FROM "agg_1h"."noise" '
                "WHERE sensor_id = $s AND time >= $hour",
                {"s": fleet[0].id, "hour": hour.isoformat()},
            )
        )

    found = await wait_until(current_hour, timeout_s=150, interval_s=1)
    assert sum(r["laeq_count"] for r in found) >= 1
    assert all(50 <= r["laeq_mean"] <= 75 for r in found)
