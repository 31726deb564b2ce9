"""A short path through the app for the hot read routes.

Why: for a small range query InfluxDB answers in about a millisecond, and FastAPI's own
per-request work (its middleware layers, matching against every route, solving the
dependency tree of the role check, validating each query parameter) cost about as much
again (docs/benchmarks.md). This ASGI middleware serves GET requests of the routes in
``ROUTES`` itself when their query is plain: every parameter known, given once, not empty,
and in the one form parsed here (RFC 3339 with an offset, decimal integers within the
route's bounds, the allowed words). It then authenticates and checks the role as the
routes' dependencies do, and calls the same endpoint functions. Anything else (another
method, a malformed or unusual value, a parameter FastAPI would ignore) goes on to
FastAPI unchanged, whose validation, errors and OpenAPI description stay the reference;
``tests/test_api_fast.py`` checks that both paths answer the same.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api import latest_routes, opendata_routes, range_routes
from api.auth import authenticated, check_role, presented_key
from api.problems import internal_problem, known_problem

Parse = Callable[[str], Any]  # returns NOT_PLAIN when FastAPI should judge the value
NOT_PLAIN = object()
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_DECIMAL = re.compile(r"[1-9][0-9]{0,8}", re.ASCII)


def rfc3339(text: str) -> Any:
    if not _RFC3339.fullmatch(text):
        return NOT_PLAIN
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # e.g. month 13: FastAPI says why
        return NOT_PLAIN


def integer(low: int, high: int) -> Parse:
    def parse(text: str) -> Any:
        if not _DECIMAL.fullmatch(text):
            return NOT_PLAIN
        value = int(text)
        return value if low <= value <= high else NOT_PLAIN

    return parse


def word(*allowed: str) -> Parse:
    return lambda text: text if text in allowed else NOT_PLAIN


def text(value: str) -> Any:
    return value


# An RFC 3339 time in a query is usually sent with these two escaped (``urlencode`` does)
_TIME_ESCAPES = (("%3A", ":"), ("%3a", ":"), ("%2B", "+"), ("%2b", "+"))


def _unquoted(text: str) -> str:
    """``unquote_plus(text)``: ``+`` and the escapes of a time by ``str.replace``, any other
    escape by ``unquote``. Exact: the characters replaced in contain no ``%``, and
    ``unquote`` decodes each escape on its own, so it may finish the job."""
    if "+" in text:
        text = text.replace("+", " ")
    for escape, char in _TIME_ESCAPES:
        if escape in text:
            text = text.replace(escape, char)
    return unquote(text) if "%" in text else text


def _pairs(query_string: bytes) -> list[tuple[str, str]]:
    """``parse_qsl(..., keep_blank_values=True)`` of the query, unquoting only the parts
    that need it; a part without ``=`` gives an empty value (which ``arguments`` leaves to
    FastAPI), as ``parse_qsl`` does."""
    if not query_string:
        return []
    pairs = []
    for part in query_string.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = _unquoted(name)
        if "%" in value or "+" in value:
            value = _unquoted(value)
        pairs.append((name, value))
    return pairs


AGGREGATE = word("mean", "min", "max", "count")
STEP = integer(1, 30 * 86400)


@dataclass(frozen=True)
class FastRoute:
    path: re.Pattern[str]  # named groups are the path parameters
    endpoint: Callable[..., Awaitable[Response]]  # the FastAPI route's own function
    query: Mapping[str, Parse]
    role: str | None  # None: open data, rate-limited instead

    def arguments(self, path_args: dict[str, str], query_string: bytes) -> dict[str, Any] | None:
        args: dict[str, Any] = dict(path_args)
        for name, raw in _pairs(query_string):
            parse = self.query.get(name)
            if parse is None or name in args or not raw:
                return None
            value = parse(raw)
            if value is NOT_PLAIN:
                return None
            args[name] = value
        return args


ROUTES = (
    FastRoute(
        re.compile(r"/sensors/(?P<sensor_id>[^/]+)/series"),
        range_routes.sensor_series,
        {"start": rfc3339, "end": rfc3339, "step": STEP, "aggregate": AGGREGATE,
         "limit": integer(1, range_routes.MAX_PAGE), "cursor": text},
        "viewer",
    ),
    FastRoute(
        re.compile(r"/sensors/(?P<sensor_id>[^/]+)/series\.csv"),
        range_routes.sensor_series_csv,
        {"start": rfc3339, "end": rfc3339, "step": STEP, "aggregate": AGGREGATE},
        "viewer",
    ),
    FastRoute(
        re.compile(r"/aggregates"),
        range_routes.aggregates,
        {"type": text, "quantity": text, "start": rfc3339, "end": rfc3339,
         "step": integer(60, 30 * 86400), "aggregate": AGGREGATE, "subdistrict": text},
        "viewer",
    ),
    FastRoute(
        re.compile(r"/latest"),
        latest_routes.latest_values,
        {"type": text, "subdistrict": text, "status": text, "bbox": text,
         "limit": integer(1, latest_routes.MAX_PAGE), "cursor": text},
        "viewer",
    ),
    FastRoute(
        re.compile(r"/open/datasets/(?P<dataset_id>[^/]+)/data"),
        opendata_routes.dataset_data,
        {"start": rfc3339, "end": rfc3339},
        None,
    ),
)  # fmt: skip
#: Required query parameters; without them FastAPI answers the 422.
REQUIRED = {
    range_routes.sensor_series: {"start"},
    range_routes.sensor_series_csv: {"start"},
    range_routes.aggregates: {"type", "quantity", "start"},
}


def route_path(scope: Scope) -> str:
    """The path the app's router matches (without ``root_path``), as Starlette takes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


class FastRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = route_path(scope)
            for route in ROUTES:
                found = route.path.fullmatch(path)
                if found is None:
                    continue
                args = route.arguments(found.groupdict(), scope["query_string"])
                if args is not None and REQUIRED.get(route.endpoint, set()) <= args.keys():
                    await self._serve(route, args, scope, receive, send)
                    return
                break
        await self.app(scope, receive, send)

    async def _serve(
        self, route: FastRoute, args: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope, receive)
        try:
            if route.role is None:
                opendata_routes.rate_limited(request)
            else:
                secret = presented_key(scope["headers"])
                check_role(await authenticated(request, secret), route.role)
            response = await route.endpoint(request, **args)
        except Exception as exc:  # answered as the FastAPI path answers it (api.problems)
            response = known_problem(exc, request.url.path) or internal_problem(
                exc, request.url.path
            )
        await response(scope, receive, send)
