"""``api.fast`` answers exactly as FastAPI's own path does: the same requests, good and bad,
sent to the app with and without it (real InfluxDB and registry), must get the same status,
headers that matter and body. And FastAPI's router must resolve every path the fast path
takes to the same endpoint, so the short cut cannot shadow another route."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
from hypothesis import given
from hypothesis import strategies as st
from query_fixtures import write_history

from api import fast
from api.app import create_app
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout, backfill_aggregates
from wiring.parts import default_fleet, register_fleet

HEADERS = ("content-type", "etag", "cache-control", "www-authenticate", "content-disposition")


@contextlib.asynccontextmanager
async def client(settings: Settings, fast_routes: bool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, fast_routes=fast_routes)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        yield http


def requests(sensor: str, key: str, other: str) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    now = datetime.now(UTC).replace(microsecond=0)
    day, hour = (now - timedelta(days=1)).isoformat(), (now - timedelta(hours=2)).isoformat()
    end = now.isoformat()  # where a default would be "now", which moves between the runs
    bearer = {"Authorization": f"Bearer {key}"}
    series, csv = f"/sensors/{sensor}/series", f"/sensors/{sensor}/series.csv"
    agg = {"type": "air_quality", "quantity": "pm25", "start": day}
    cases: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        (series, {"start": day}, bearer),
        (series, {"start": hour, "end": now.isoformat(), "limit": "7"}, bearer),
        (series, {"start": day, "step": "900", "aggregate": "max"}, bearer),
        (series, {"start": day, "step": "600", "aggregate": "count"}, bearer),
        (series, {"start": day, "limit": "5", "cursor": "MjAyMC0wMS0wMVQwMDowMDowMFo"}, bearer),
        (series, {"start": "2000-01-01T00:00:00Z"}, bearer),
        (series, {"start": now.strftime("%Y-%m-%dT%H:%M:%S.123456+08:00")}, bearer),
        (series, {"start": day}, {"authorization": f"bearer {key}"}),
        (series, {"start": day}, {"X-API-Key": key}),
        (series, {"start": day}, {"Authorization": "Basic eDp5", "X-API-Key": key}),
        (series, {"start": day}, {}),
        (series, {"start": day}, {"Authorization": "Bearer snk_forged"}),
        (series, {"start": day}, {"Authorization": "Bearer "}),
        (series, {"start": day, "cursor": "%%%"}, bearer),
        (series, {"start": now.isoformat(), "end": day}, bearer),
        (series, {"start": "2026-11-25T08:00:00"}, bearer),  # no offset
        (series, {"start": "2026-13-25T08:00:00Z"}, bearer),
        (series, {"start": "yesterday"}, bearer),
        (series, {"start": "1700000000"}, bearer),  # unix time: FastAPI's to judge
        (series, {"start": day, "limit": "0"}, bearer),
        (series, {"start": day, "limit": "10001"}, bearer),
        (series, {"start": day, "limit": "-3"}, bearer),
        (series, {"start": day, "limit": "07"}, bearer),
        (series, {"start": day, "aggregate": "avg"}, bearer),
        (series, {"start": day, "step": "0"}, bearer),
        (series, {"start": day, "end": ""}, bearer),
        (series, {"start": day, "unknown": "1"}, bearer),
        (f"{series}?start={day.replace('+', '%2B')}&start={hour.replace('+', '%2B')}", {}, bearer),
        (series, {}, bearer),
        ("/sensors/NOPE-1/series", {"start": day}, bearer),
        (csv, {"start": day, "end": end}, bearer),
        (csv, {"start": day, "end": end, "step": "3600", "aggregate": "min"}, bearer),
        (csv, {"start": "2000-01-01T00:00:00Z"}, bearer),  # too large: 422 with estimate
        (csv, {"start": day}, {}),
        ("/aggregates", agg, bearer),
        ("/aggregates", agg | {"subdistrict": "beizhan", "step": "7200"}, bearer),
        ("/aggregates", agg | {"aggregate": "count"}, bearer),
        ("/aggregates", agg | {"quantity": "nothing"}, bearer),
        ("/aggregates", agg | {"type": "nothing"}, bearer),
        ("/aggregates", agg | {"step": "59"}, bearer),
        ("/aggregates", agg | {"start": "2000-01-01T00:00:00Z", "step": "60"}, bearer),
        ("/aggregates", {"type": "air_quality", "start": day}, bearer),
        ("/latest", {}, bearer),
        ("/latest", {"type": "air_quality", "limit": "2"}, bearer),
        ("/latest", {"subdistrict": "beizhan", "status": "active"}, bearer),
        ("/latest", {"bbox": "121.42,31.21,121.49,31.32"}, bearer),
        ("/latest", {"bbox": "1,2,3"}, bearer),
        ("/latest", {"type": "nothing"}, bearer),
        ("/latest", {"status": "nothing"}, bearer),
        ("/latest", {"limit": "1001"}, bearer),
        ("/latest", {"limit": "3", "cursor": "QVEtSkkwMDAwMA"}, bearer),
        ("/latest", {}, {"Authorization": f"Bearer {other}"}),
        ("/open/datasets/air_quality_hourly/data", {"end": end}, {}),
        ("/open/datasets/air_quality_hourly/data", {"start": day, "end": end}, {}),
        ("/open/datasets/air_quality_hourly/data", {"start": "2000-01-01T00:00:00Z"}, {}),
        ("/open/datasets/nothing/data", {"start": day, "end": end}, {}),
    ]
    return cases


async def test_fast_path_answers_as_fastapi_does(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    fleet = default_fleet(2 * len(catalogue.types))
    await register_fleet(settings, fleet)
    end = datetime.now(UTC)
    await write_history(influx, catalogue, fleet, hours=26, end=end, step_s=300)
    await backfill_aggregates(influx, catalogue, end - timedelta(hours=27), end)
    sensor = next(d.id for d in fleet if d.type == "air_quality")
    cases = requests(sensor, api_keys["viewer"], api_keys["engineer"])
    answers: dict[bool, list[tuple[int, dict[str, str], bytes]]] = {}
    for fast_routes in (True, False):
        async with client(settings, fast_routes) as http:
            answers[fast_routes] = []
            for path, params, headers in cases:
                r = await http.get(path, params=params, headers=headers)
                kept = {h: r.headers[h] for h in HEADERS if h in r.headers}
                answers[fast_routes].append((r.status_code, kept, r.content))
    for case, quick, plain in zip(cases, answers[True], answers[False], strict=True):
        assert quick == plain, case
    statuses = {status for status, _, _ in answers[True]}
    assert {200, 401, 404, 422} <= statuses  # the cases reach every kind of answer
    assert sum(len(body) for status, _, body in answers[True] if status == 200) > 100_000


async def test_fast_path_takes_only_what_fastapi_routes_there(settings: Settings) -> None:
    # FastAPI's router records the endpoint it picked in the scope: for each path the fast
    # path takes, it must pick the very function the fast path calls.
    plain = create_app(settings, fast_routes=False)
    samples = {
        r"/sensors/(?P<sensor_id>[^/]+)/series": "/sensors/AQ-1/series",
        r"/sensors/(?P<sensor_id>[^/]+)/series\.csv": "/sensors/AQ-1/series.csv",
        r"/aggregates": "/aggregates",
        r"/latest": "/latest",
        r"/open/datasets/(?P<dataset_id>[^/]+)/data": "/open/datasets/x/data",
    }
    assert {route.path.pattern for route in fast.ROUTES} == samples.keys()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    for route in fast.ROUTES:
        path = samples[route.path.pattern]
        scope: dict[str, Any] = {
            "type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"",
            "headers": [], "client": ("127.0.0.1", 1), "server": ("api", 80),
            "scheme": "http", "http_version": "1.1", "asgi": {"version": "3.0"},
        }  # fmt: skip
        await plain(scope, receive, send)  # 401 or 404: no key, no state needed
        assert scope.get("endpoint") is route.endpoint, path


@given(
    st.binary(max_size=60)
    | st.lists(
        st.sampled_from(
            [
                b"a",
                b"=",
                b"&",
                b"%2B",
                b"+",
                b"%",
                b"\xe4",
                b"%E4%B8%AD",
                b"",
                b"%3A",
                b"%3a",
                b"%2b",
                b"%25",
                b"3A",
                b"2",
                b"%E4",
            ]
        ),
        max_size=12,
    ).map(b"".join)
)
def test_query_pairs_are_parse_qsl(query: bytes) -> None:
    text = query.decode("latin-1")
    assert fast._pairs(query) == parse_qsl(text, keep_blank_values=True)
