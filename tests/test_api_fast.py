"""``api.fast`` answers exactly as FastAPI's own path does: the same requests, good and bad,
sent to the app with and without it (real InfluxDB and registry), must get the same status,
headers that matter and body, and the short path must have served every route it takes.
Its routes, roles and errors come from the app: a route or a middleware added to the app
afterwards is served as FastAPI serves it. And FastAPI's router must resolve every path the
short path takes to the same endpoint."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import Depends, FastAPI, Query, Request
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st
from query_fixtures import write_history
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import fast
from api.app import create_app
from api.auth import require
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout, backfill_aggregates
from wiring.parts import default_fleet, register_fleet

HEADERS = ("content-type", "etag", "cache-control", "www-authenticate", "content-disposition")
Answer = tuple[int, dict[str, str], bytes]


class Observed:
    """An outer middleware: notes for each request the plan the short path served it with
    (None: FastAPI served it), read from the scope all layers share, and stamps the
    answer, as any middleware added to the app may."""

    def __init__(self, app: ASGIApp, served: list[fast.Plan | None]) -> None:
        self.app, self.served = app, served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-observed", b"yes")]
            await send(message)

        await self.app(scope, receive, stamped)
        if scope["type"] == "http":
            plan = scope.get(fast.SCOPE_KEY)
            self.served.append(None if plan is None else plan[0])


@contextlib.asynccontextmanager
async def client(
    settings: Settings, fast_routes: bool, extend: Callable[[FastAPI], None] = lambda app: None
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, list[fast.Plan | None]]]:
    """The app (with what ``extend`` adds to it, then ``Observed``) and a client to it."""
    app = create_app(settings, fast_routes=fast_routes)
    extend(app)
    served: list[fast.Plan | None] = []
    app.add_middleware(Observed, served=served)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        yield http, app, served


Case = tuple[str, dict[str, Any], dict[str, str]]


async def answers(
    settings: Settings, cases: list[Case], extend: Callable[[FastAPI], None] = lambda app: None
) -> tuple[dict[bool, list[Answer]], list[fast.Plan | None], list[fast.Plan]]:
    """Each case's answer with and without the short path; which plan served each case
    with it; and the plans it derived from the app."""
    out: dict[bool, list[Answer]] = {}
    for fast_routes in (True, False):
        async with client(settings, fast_routes, extend) as (http, app, served):
            out[fast_routes] = []
            for path, params, headers in cases:
                r = await http.get(path, params=params, headers=headers)
                assert r.headers["x-observed"] == "yes"  # every answer went through it
                kept = {h: r.headers[h] for h in HEADERS if h in r.headers}
                out[fast_routes].append((r.status_code, kept, r.content))
            if fast_routes:
                quick, plans = served, [e.plan for e in fast.derive(app) if e.plan]
            else:
                assert served == [None] * len(cases)
    return out, quick, plans


def requests(sensor: str, key: str, other: str) -> list[Case]:
    now = datetime.now(UTC).replace(microsecond=0)
    day, hour = (now - timedelta(days=1)).isoformat(), (now - timedelta(hours=2)).isoformat()
    end = now.isoformat()  # where a default would be "now", which moves between the runs
    bearer = {"Authorization": f"Bearer {key}"}
    series, csv = f"/sensors/{sensor}/series", f"/sensors/{sensor}/series.csv"
    agg = {"type": "air_quality", "quantity": "pm25", "start": day}
    cases: list[Case] = [
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
        ("/sensors/export.csv", {}, bearer),
        ("/sensors/export.csv", {}, {"Authorization": "Bearer snk_forged"}),
        ("/sensors/export.geojson", {}, {"X-API-Key": key}),
        ("/sensors/export.geojson", {"unknown": "1"}, bearer),
        ("/sensors/export.geojson", {}, {}),
        ("/docs", {}, {}),  # api.docs_pages: plain GET routes answering a Response
        ("/redoc", {}, {}),
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
    found, served, plans = await answers(settings, cases)
    for case, quick, plain in zip(cases, found[True], found[False], strict=True):
        assert quick == plain, case
    statuses = {status for status, _, _ in found[True]}
    assert {200, 401, 404, 422} <= statuses  # the cases reach every kind of answer
    assert sum(len(body) for status, _, body in found[True] if status == 200) > 100_000
    # the short path served every route it takes (a route it newly takes needs cases
    # here), and refused, good and bad, what it must leave to FastAPI
    assert {p.path for p in served if p} == {p.path for p in plans}
    assert {"/latest", "/sensors/{sensor_id}/series", "/aggregates"} <= {p.path for p in plans}
    assert sum(p is None for p in served) >= 10 and sum(p is not None for p in served) >= 30


async def test_routes_and_middleware_added_later_are_served_as_fastapi_serves_them(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    """A route put in front of ``/latest`` (engineers only), a new route, and a middleware
    (``Observed``) added after create_app: the short path takes the routes as the app
    has them, with their roles and validation, and serves inside the middleware."""

    async def shadow(request: Request) -> Response:
        return PlainTextResponse("the new /latest")

    async def engineering(request: Request, n: Annotated[int, Query(ge=1, le=5)] = 1) -> Response:
        return PlainTextResponse(f"engineering {n}")

    def extend(app: FastAPI) -> None:
        engineer = [Depends(require("engineer"))]
        app.router.routes.insert(0, APIRoute("/latest", shadow, dependencies=engineer))
        app.add_api_route("/engineering", engineering, dependencies=engineer)

    viewer = {"Authorization": f"Bearer {api_keys['viewer']}"}
    engineer = {"Authorization": f"Bearer {api_keys['engineer']}"}
    cases: list[Case] = [
        ("/latest", {}, viewer),
        ("/latest", {}, engineer),
        ("/latest", {}, {}),
        ("/engineering", {"n": "2"}, engineer),
        ("/engineering", {}, engineer),
        ("/engineering", {"n": "2"}, viewer),
        ("/engineering", {"n": "9"}, engineer),
        ("/engineering", {"n": "two"}, engineer),
    ]
    found, served, _ = await answers(settings, cases, extend)
    for case, quick, plain in zip(cases, found[True], found[False], strict=True):
        assert quick == plain, case
    assert [status for status, _, _ in found[True]] == [403, 200, 401, 200, 200, 403, 422, 422]
    assert found[True][1][2] == b"the new /latest" and found[True][3][2] == b"engineering 2"
    taken = [None if p is None else p.endpoint for p in served]
    assert taken == [shadow, shadow, shadow, engineering, engineering, engineering, None, None]


async def test_fast_routes_refuse_to_be_inside_another_middleware(settings: Settings) -> None:
    """A middleware inside it would not see the requests it serves: it will not start."""
    app = create_app(settings)
    app.user_middleware.append(Middleware(Observed, served=[]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        with pytest.raises(RuntimeError, match="innermost"):
            await http.get("/latest")


async def test_fast_path_takes_only_what_fastapi_routes_there(settings: Settings) -> None:
    # FastAPI's router records the endpoint it picked in the scope: for a path of each
    # route the short path takes, it must pick the very function the short path calls.
    plain = create_app(settings, fast_routes=False)
    plans = [e.plan for e in fast.derive(create_app(settings)) if e.plan]
    assert len(plans) >= 5

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    for plan in plans:
        path = re.sub(r"\{[^}]+\}", "AQ-1", plan.path)
        scope: dict[str, Any] = {
            "type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"",
            "headers": [], "client": ("127.0.0.1", 1), "server": ("api", 80),
            "scheme": "http", "http_version": "1.1", "asgi": {"version": "3.0"},
        }  # fmt: skip
        await plain(scope, receive, send)  # 401 or 404: no key, no state needed
        picked = scope.get("endpoint")
        # the same function (a closure made per app, as api.docs_pages makes, by its name)
        assert picked is not None and picked.__code__ is plan.endpoint.__code__, path


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
