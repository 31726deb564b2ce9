"""Open data: catalogue, aggregated data only, and the per-client rate limit over HTTP."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from query_fixtures import sample_values, write_history
from support import running

from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.opendata import load_opendata
from sensornet.settings import Settings
from sensornet.shared_limit import SharedRateLimiter
from sensornet.storage_layout import apply_storage_layout, backfill_aggregates
from wiring.parts import default_fleet, register_fleet, run_api


def test_shared_limit_allows_burst_then_rate(tmp_path: Path) -> None:
    """Two limiters on one file (two workers) share each client's allowance."""
    one = SharedRateLimiter(tmp_path / "limits.db", rate=2.0, burst=3)
    two = SharedRateLimiter(tmp_path / "limits.db", rate=2.0, burst=3)
    assert [w.check("a", 100.0) for w in (one, two, one)] == [0, 0, 0]
    assert two.check("a", 100.0) == 1  # empty: half a second to the next one, rounded up
    assert one.check("b", 100.0) == 0  # another client has its own allowance
    assert two.check("a", 100.5) == 0  # refilled one
    assert one.check("a", 100.5) == 1
    assert one.check("a", 10_000.0) == 0  # a clock that went back does not lock it out
    assert two.check("a", 100.0) == 0
    one.close()
    two.close()


def test_shipped_catalogue_loads() -> None:
    cat = load_opendata()
    assert "air_quality_hourly" in cat.datasets and cat.licence["id"] == "CC-BY-4.0"


async def test_open_data_over_http(
    settings: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = [d for d in default_fleet(140) if d.type == "air_quality"]
    await register_fleet(settings, fleet)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await write_history(influx, catalogue, fleet, hours=3, end=end, step_s=300)
    await backfill_aggregates(influx, catalogue, end - timedelta(hours=3), end)
    limited = settings.model_copy(update={"opendata_burst": 6, "opendata_rate_per_s": 0.01})
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with running(run_api, limited), httpx.AsyncClient(base_url=base) as http:
        listing = (await http.get("/open/datasets")).json()
        air = next(d for d in listing["datasets"] if d["id"] == "air_quality_hourly")
        assert air["licence"]["id"] == "CC-BY-4.0"
        assert {"id": "pm25", "label": "PM2.5", "unit": "µg/m³"} in air["fields"]
        params = {"start": (end - timedelta(hours=3)).isoformat(), "end": end.isoformat()}
        data = (await http.get("/open/datasets/air_quality_hourly/data", params=params)).json()
        assert data["units"]["pm25"] == "µg/m³"
        areas = {d.subdistrict for d in fleet}
        assert {r["subdistrict"] for r in data["records"]} == areas
        assert len(data["records"]) == 3 * len(areas)
        assert all("sensor_id" not in r for r in data["records"])  # aggregated only
        too_long = await http.get(
            "/open/datasets/air_quality_hourly/data",
            params={"start": "2020-01-01T00:00:00Z", "end": end.isoformat()},
        )
        assert too_long.status_code == 422
        assert (await http.get("/open/datasets/nope")).status_code == 404
        # 4 requests above; the burst of 6 allows 2 more, then refuses
        assert (await http.get("/open/datasets")).status_code == 200
        assert (await http.get("/open/datasets")).status_code == 200
        refused = await http.get("/open/datasets")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        # other endpoints are not rate-limited by the open-data bucket
        assert (await http.get("/latest", headers=viewer_headers)).status_code == 200
        assert (await http.get("/latest")).status_code == 401  # anonymous: open data only


async def test_open_data_publishes_finished_hours_only(
    settings: Settings, influx: InfluxClient
) -> None:
    """The hourly aggregates hold the hour in progress too (the CQ refreshes it); open data
    publishes an hour once it has ended, and says up to when in ``end``."""
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = [d for d in default_fleet(140) if d.type == "air_quality"][:3]
    await register_fleet(settings, fleet)
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    await write_history(influx, catalogue, fleet, hours=2, end=now, step_s=120)
    # and one reading in the hour in progress whatever the minute (the 120 s steps skip it
    # during the first two minutes of an hour)
    rng = random.Random(2)
    in_progress = hour + (now - hour) / 2
    await influx.write(
        encode_lines(
            encode_point(
                d.type,
                {"sensor_id": d.id, "subdistrict": d.subdistrict},
                sample_values(catalogue, d.type, rng),
                int(in_progress.timestamp() * 1e9),
            )
            for d in fleet
        )
    )
    await backfill_aggregates(
        influx, catalogue, hour - timedelta(hours=1), hour + timedelta(hours=1)
    )
    current = await influx.query(
        'SELECT count("pm25_mean") FROM "agg_1h"."air_quality" WHERE time >= $h',
        {"h": hour.isoformat()},
    )
    assert current, "the hour in progress is in the hourly policy"
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        params = {"start": (hour - timedelta(hours=1)).isoformat()}  # end: now, by default
        data = (await http.get("/open/datasets/air_quality_hourly/data", params=params)).json()
    published_until = datetime.fromisoformat(data["end"])
    assert published_until in (hour, hour + timedelta(hours=1))  # the API's own clock
    times = {datetime.fromisoformat(r["time"]) for r in data["records"]}
    assert times == {published_until - timedelta(hours=1)}
