"""The city map scales: at city zoom one panel query returns one row per subdistrict
whatever the size of the fleet; per-sensor markers come only for the area chosen in the
dashboard's ``$area`` variable. Measured at 100,000 sensors: the operations view is
written to a real InfluxDB by the alarm runner's own writer (``operations_view_lines``,
what ``AlarmRunner.tick`` writes from the registry each round), then the geomap panel's
own queries run with Grafana's macros expanded. The registry itself is not filled with
100,000 rows here: its audited upsert takes ~1.5 ms a sensor (150 s), far over this
suite's budget; the runner's tick from a real registry to these measurements is run at
a small fleet by tests/test_dashboards_queries.py.

No Grafana server is installable on this machine (no package source offers one), so
what the browser would receive is measured as what the panel's queries return."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from typing import Any

from alarms.operations_view import operations_view_lines
from alarms.runner import AlarmRunner
from dashboards.build import WHOLE_CITY, build_dashboards
from dashboards.macros import expand
from sensornet.alarms.rules import load_rules
from sensornet.catalogue import load_catalogue
from sensornet.district import District, load_district
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines
from sensornet.liveness import Liveness
from sensornet.mapcrs import to_map
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import register_fleet

FLEET = 100_000


def _fleet(district: District, n: int) -> list[DeviceInfo]:
    """``n`` sensors spread over the subdistricts, each within its radius of the centre."""
    rng = random.Random(7)
    areas = list(district.subdistricts.values())
    out = []
    for i in range(n):
        a = areas[i % len(areas)]
        r, angle = a.radius_m * math.sqrt(rng.random()), rng.random() * 2 * math.pi
        lat = a.lat + r * math.cos(angle) / 111_320
        lon = a.lon + r * math.sin(angle) / (111_320 * math.cos(math.radians(a.lat)))
        out.append(DeviceInfo(f"aq-{i:06d}", "air_quality", a.id, lat, lon, "active"))
    return out


def _rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in series:
        for values in s.get("values") or []:
            out.append(dict(zip(s["columns"], values, strict=True)) | s.get("tags", {}))
    return out


def _map_queries() -> dict[str, str]:
    board = build_dashboards()["sn-city"]
    geomap = next(p for p in board["panels"] if p["type"] == "geomap")
    return {t["refId"]: t["query"] for t in geomap["targets"]}


async def test_city_zoom_returns_one_row_per_subdistrict_at_100k_sensors(
    settings: Settings, influx: InfluxClient
) -> None:
    district = load_district()
    fleet = _fleet(district, FLEET)
    started = time.perf_counter()
    now = time.time_ns()
    states: dict[str, Liveness] = {
        d.id: "online" if i % 10 else "offline" for i, d in enumerate(fleet)
    }
    lines = operations_view_lines(fleet, states, [], now, crs="gcj02")
    # InfluxDB creates a series per sensor at ~1 ms each on this machine (100,000: ~60 s),
    # so the per-sensor rows of two areas are written and every other line (the summaries
    # computed from all 100,000); a city-zoom query that read per-sensor rows would still
    # return thousands of rows and fail below.
    per_area = Counter(d.subdistrict for d in fleet)
    area, other = sorted(per_area)[:2]
    kept = (f"subdistrict={area} ", f"subdistrict={area},", f"subdistrict={other} ",
            f"subdistrict={other},")  # fmt: skip
    lines = [
        line for line in lines
        if not line.startswith("sensor_liveness,") or any(k in line for k in kept)
    ]  # fmt: skip
    assert len(lines) > 2 * FLEET // len(per_area)
    # new series are slow to create on a loaded machine: a generous timeout for the load
    async with InfluxClient(settings.influx_url, settings.influx_db, timeout_s=120) as bulk:
        for i in range(0, len(lines), 5_000):
            await bulk.write(encode_lines(lines[i : i + 5_000]))
    setup_s = time.perf_counter() - started

    queries = _map_queries()
    areas = _rows(await influx.query(expand(queries["A"], {"area": WHOLE_CITY})))
    assert 0 < len(areas) <= len(district.subdistricts)
    assert sum(r["sensors"] for r in areas) == FLEET
    assert sum(r["offline"] for r in areas) == FLEET // 10  # counts by liveness add up
    assert sum(r["online"] + r["offline"] for r in areas) == FLEET
    # at city zoom the per-sensor layer's query returns nothing
    assert _rows(await influx.query(expand(queries["B"], {"area": WHOLE_CITY}))) == []

    # filtered to one subdistrict: exactly its sensors, in the map's coordinate system
    sensors = _rows(await influx.query(expand(queries["B"], {"area": area})))
    assert len(sensors) == per_area[area] < FLEET / 4
    one = next(d for d in fleet if d.subdistrict == area)
    row = next(r for r in sensors if r["sensor_id"] == one.id)
    assert (row["lat"], row["lon"]) == to_map(one.lat, one.lon, "gcj02")
    assert (row["lat"], row["lon"]) != (one.lat, one.lon)  # converted, not WGS84
    print(f'{{"sensors": {FLEET}, "city_zoom_rows": {len(areas)}, '
          f'"area_rows": {len(sensors)}, "setup_s": {setup_s:.1f}}}')  # fmt: skip


async def test_the_alarm_runner_writes_map_positions_in_the_configured_system(
    settings: Settings, influx: InfluxClient
) -> None:
    """The real path at a small fleet: registry → ``AlarmRunner.tick`` → InfluxDB, with
    ``map_crs`` as ``SENSORNET_MAP_CRS`` sets it (alarms/runner.py ``run_alarms``)."""
    await apply_storage_layout(influx, settings, load_catalogue())
    fleet = _fleet(load_district(), 28)
    await register_fleet(settings, fleet)
    async with open_registry(settings.registry_database_url) as engine:
        runner = AlarmRunner(influx, engine, load_catalogue(), load_rules(), map_crs="gcj02")
        await runner.start()
        await runner.tick()
    rows = _rows(await influx.query(
        'SELECT last("lat") AS "lat", last("lon") AS "lon", last("map_lat") AS "map_lat", '
        'last("map_lon") AS "map_lon" FROM "sensor_liveness" GROUP BY "sensor_id"'
    ))  # fmt: skip
    assert len(rows) == len(fleet)
    by_id = {d.id: d for d in fleet}
    for row in rows:
        d = by_id[row["sensor_id"]]
        assert (row["lat"], row["lon"]) == (d.lat, d.lon)  # WGS84 kept as registered
        assert (row["map_lat"], row["map_lon"]) == to_map(d.lat, d.lon, "gcj02")
    areas = _rows(await influx.query(expand(_map_queries()["A"], {"area": WHOLE_CITY})))
    assert len(areas) == 14 and sum(r["never"] for r in areas) == len(fleet)
