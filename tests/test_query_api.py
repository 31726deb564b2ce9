"""The query API over a real InfluxDB holding simulated history, called over HTTP."""

from __future__ import annotations

import csv
import dataclasses
import io
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
from query_fixtures import sample_values, write_history
from support import running

from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout, backfill_aggregates
from wiring.parts import default_fleet, register_fleet, run_api


async def _district(settings: Settings, influx: InfluxClient, hours: float = 3) -> list[DeviceInfo]:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = default_fleet(2 * len(catalogue.types))
    fleet[1] = dataclasses.replace(fleet[1], status="maintenance")
    await register_fleet(settings, fleet)
    end = datetime.now(UTC)
    await write_history(influx, catalogue, fleet, hours=hours, end=end)
    await backfill_aggregates(influx, catalogue, end - timedelta(hours=hours + 1), end)
    return fleet


def _base(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


async def test_latest_of_all_sensors_with_filters_paging_and_etag(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str]
) -> None:
    fleet = await _district(settings, influx)
    catalogue = load_catalogue()
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=_base(settings), headers=engineer_headers) as http,
    ):
        r = await http.get("/latest")
        assert r.status_code == 200
        body = r.json()
        assert body["count"] == len(fleet) and body["next_cursor"] is None
        for item in body["items"]:
            assert item["time"] is not None, item["sensor_id"]
            quantities = catalogue.get(item["type"]).quantities
            assert item["values"].keys() == set(quantities)
            for q, v in item["values"].items():
                assert v["unit"] == quantities[q].unit
        # filters
        air = (await http.get("/latest", params={"type": "air_quality"})).json()
        assert {i["sensor_id"] for i in air["items"]} == {
            d.id for d in fleet if d.type == "air_quality"
        }
        one = fleet[0]
        by_area = (await http.get("/latest", params={"subdistrict": one.subdistrict})).json()
        assert by_area["items"] and all(
            i["subdistrict"] == one.subdistrict for i in by_area["items"]
        )
        box = f"{one.lon - 1e-6},{one.lat - 1e-6},{one.lon + 1e-6},{one.lat + 1e-6}"
        boxed = (await http.get("/latest", params={"bbox": box})).json()
        assert [i["sensor_id"] for i in boxed["items"]] == [one.id]
        retired = (await http.get("/latest", params={"status": "retired"})).json()
        assert retired["items"] == []
        assert (await http.get("/latest", params={"status": "broken"})).status_code == 422
        # cursor pagination walks every sensor exactly once
        seen, cursor = [], None
        while True:
            params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
            page = (await http.get("/latest", params=params)).json()
            seen += [i["sensor_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(d.id for d in fleet)
        # HTTP caching
        etag = r.headers["etag"]
        assert "max-age" in r.headers["cache-control"]
        again = await http.get("/latest", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        maint = (await http.get("/latest", params={"status": "maintenance"})).json()
        assert [i["sensor_id"] for i in maint["items"]] == [fleet[1].id]
        # a new reading changes the ETag
        values = sample_values(catalogue, one.type, random.Random(5))
        tags = {"sensor_id": one.id, "subdistrict": one.subdistrict}
        await influx.write(encode_lines([encode_point(one.type, tags, values, time.time_ns())]))
        changed = await http.get("/latest", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert (await http.get("/latest", params={"limit": 5000})).status_code == 422


async def test_series_raw_downsampled_paged_and_csv(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str]
) -> None:
    fleet = await _district(settings, influx)
    air = next(d for d in fleet if d.type == "air_quality")
    start = (datetime.now(UTC) - timedelta(hours=4)).isoformat()
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=_base(settings), headers=engineer_headers) as http,
    ):
        raw = (await http.get(f"/sensors/{air.id}/series", params={"start": start})).json()
        assert raw["resolution"] == "raw" and raw["aggregate"] is None
        assert 170 <= len(raw["readings"]) <= 181  # 3 h at 60 s
        assert raw["units"]["pm25"] == "µg/m³"
        assert raw["columns"] == ["time", "pm25", "pm10", "no2", "o3", "co"]
        assert raw["columns"][1:] == list(raw["units"])
        assert all(len(row) == len(raw["columns"]) for row in raw["readings"])
        assert raw["readings"][0][0].endswith("Z")
        pm25 = raw["columns"].index("pm25")
        hourly = (
            await http.get(
                f"/sensors/{air.id}/series",
                params={"start": start, "step": 3600, "aggregate": "max"},
            )
        ).json()
        assert hourly["resolution"] == "1h" and hourly["aggregate"] == "max"
        assert 3 <= len(hourly["readings"]) <= 4
        top = max(r[pm25] for r in raw["readings"])
        assert max(r[hourly["columns"].index("pm25")] for r in hourly["readings"]) == top
        minutes = (
            await http.get(
                f"/sensors/{air.id}/series",
                params={"start": start, "step": 600, "aggregate": "count"},
            )
        ).json()
        assert minutes["resolution"] == "1m"
        counts = [r[minutes["columns"].index("pm25")] for r in minutes["readings"]]
        assert sum(counts) == len(raw["readings"])
        assert minutes["units"]["pm25"] == "count"
        # pages of 50 rebuild the raw answer
        got, cursor = [], None
        while True:
            params = {"start": start, "limit": 50} | ({"cursor": cursor} if cursor else {})
            page = (await http.get(f"/sensors/{air.id}/series", params=params)).json()
            got += page["readings"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == raw["readings"]
        # CSV
        r = await http.get(f"/sensors/{air.id}/series.csv", params={"start": start})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(r.text)))
        assert table[0][:2] == ["time", "pm25 [µg/m³]"]
        assert len(table) == len(raw["readings"]) + 1
        assert [float(x) for x in table[1][1:]] == raw["readings"][0][1:]
        # too much: a clear 4xx with the estimate, not a timeout
        r = await http.get(
            f"/sensors/{air.id}/series.csv", params={"start": "2000-01-01T00:00:00Z"}
        )
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["estimated_rows"] > r.json()["max_rows"]
        assert (await http.get("/sensors/nope/series", params={"start": start})).status_code == 404
        bad = await http.get(f"/sensors/{air.id}/series", params={"start": start, "aggregate": "x"})
        assert bad.status_code == 422


async def test_aggregates_per_subdistrict(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str]
) -> None:
    fleet = await _district(settings, influx)
    areas = {d.subdistrict for d in fleet if d.type == "noise"}
    start = (datetime.now(UTC) - timedelta(hours=4)).isoformat()
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=_base(settings), headers=engineer_headers) as http,
    ):
        body = (
            await http.get(
                "/aggregates",
                params={"type": "noise", "quantity": "laeq", "start": start, "step": 3600},
            )
        ).json()
        assert body["unit"] == "dB(A)" and body["resolution"] == "1h"
        assert {s["subdistrict"] for s in body["series"]} == areas
        for s in body["series"]:
            assert s["points"] and all(50 <= p["value"] <= 75 for p in s["points"])
        r = await http.get(
            "/aggregates",
            params={
                "type": "noise",
                "quantity": "laeq",
                "start": "2000-01-01T00:00:00Z",
                "step": 60,
            },
        )
        assert r.status_code == 422 and r.json()["title"] == "Result would be too large"
        r = await http.get(
            "/aggregates", params={"type": "noise", "quantity": "pm25", "start": start}
        )
        assert r.status_code == 422


async def test_platform_health(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str]
) -> None:
    fleet = await _district(settings, influx, hours=0.2)
    now = time.time_ns()
    lines = [
        encode_point(
            "platform_ingest",
            {"ingester": "ingester-1"},
            {
                "stored": stored,
                "lag_ms": 12.5,
                "spool_readings": 3,
                "spool_bytes": 300,
                "dropped_lines": 2,
            },
            now - age_s * 10**9,
        )
        for stored, age_s in ((1000, 20), (1500, 10))
    ]
    lines.append(
        encode_point(
            "platform_rejects", {"ingester": "ingester-1", "reason": "range"}, {"count": 7}, now
        )
    )
    lines.append(
        encode_point("device_status", {"sensor_id": fleet[0].id}, {"state": "offline"}, now)
    )
    await influx.write(encode_lines(lines))
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=_base(settings), headers=engineer_headers) as http,
    ):
        body = (await http.get("/platform/health")).json()
    assert body["stored_per_s"] == 50.0
    assert body["max_lag_ms"] == 12.5 and body["spool_readings"] == 3
    assert body["rejects_by_reason"] == {"range": 7}
    assert [i["dropped_lines"] for i in body["ingesters"]] == [2]  # refused letters/status
    reporting = [d for d in fleet if d.reporting]
    assert sum(body["devices"].values()) == len(reporting)
    assert body["devices"]["offline"] >= 1  # said offline by its status topic
    # types reporting less often than the 12 minutes of history may not have reported yet
    slow = [d for d in reporting if load_catalogue().get(d.type).interval_s > 0.2 * 3600]
    assert body["devices"]["online"] >= len(reporting) - 1 - len(slow)
    area = body["devices_by_subdistrict"][fleet[0].subdistrict]
    assert area["offline"] >= 1


async def test_a_sensor_whose_type_left_the_catalogue_breaks_nothing_else(
    settings: Settings, influx: InfluxClient, engineer_headers: dict[str, str]
) -> None:
    """A registry older than the catalogue (a type renamed or dropped in an upgrade): the
    lists still answer and show the sensor without values; its own routes say why."""
    fleet = await _district(settings, influx, hours=1)
    orphan = dataclasses.replace(fleet[0], id="TRAM-1", type="tram_counter")
    await register_fleet(settings, [orphan])
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=_base(settings), headers=engineer_headers) as http,
    ):
        latest = await http.get("/latest")
        assert latest.status_code == 200, latest.text
        items = {i["sensor_id"]: i for i in latest.json()["items"]}
        assert items["TRAM-1"]["time"] is None and items["TRAM-1"]["values"] == {}
        assert items[fleet[0].id]["values"]  # the others keep their readings
        health = await http.get("/platform/health")
        assert health.status_code == 200, health.text
        for path in (
            "/sensors/TRAM-1/series",
            "/sensors/TRAM-1/series.csv",
            "/sensors/TRAM-1/latest",
            "/sensors/TRAM-1/view",
            "/devices/TRAM-1/accounting",
        ):
            r = await http.get(path, params={"start": start})
            assert r.status_code == 409, (path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert "tram_counter" in r.json()["detail"], path
