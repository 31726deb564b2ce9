"""The error answers each route can give, declared in the OpenAPI document as RFC 9457
``application/problem+json``: what a client (and schemathesis, tests/test_api_fuzz.py)
reads there is what the API does.

Derived from each route, after every router is included (``declare``), by the rules the
API's own layers follow, so a new route gets them without a table:

- 401 and 403: the route authenticates (``api.auth.principal`` among its dependencies);
- 404: it has path parameters (an unknown sensor, key, alarm...);
- 409: it authenticates (a registry conflict, or a sensor type the catalogue lost);
- 400: it takes a body (one FastAPI cannot read as its content type);
- 413: it takes a body (api.body_guard's cap);
- 422: it has parameters or a body (validation; FastAPI's own 422 schema replaced);
- 429: it is open data (api.opendata_routes: the shared rate limit);
- 502 and 503: it authenticates or is open data (InfluxDB, the broker or the registry
  behind it failing: a concealed problem with an error id, api.problems).

A status the route already declares itself is left as the route wrote it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict

from api.auth import principal
from api.problems import PROBLEM


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; some problems add members (``errors``, ``error_id``...)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    instance: str = ""


_SCHEMA = ProblemDetails.model_json_schema()
_WHY = {
    400: "A body that cannot be read as its content type",
    401: "No API key, or an unknown, revoked or expired one",
    403: "The key's role is too low for this route",
    404: "Not found",
    409: "Conflict with the registry's state",
    413: "Body larger than this route's cap (docs/api.md)",
    422: "Invalid request (the problem says which part and why)",
    429: "Rate limit: retry after Retry-After seconds",
    502: "The time-series store failed (error id to quote)",
    503: "A service behind the API is unavailable (error id to quote)",
}


def _calls(dependant: Dependant) -> set[Any]:
    found: set[Any] = set()
    for d in dependant.dependencies:
        found.add(d.call)
        found |= _calls(d)
    return found


def statuses(route: Any) -> set[int]:
    """The error statuses ``route`` (a ``RouteContext``: the route as the app serves it,
    with its routers' prefixes and dependencies) can answer, by the rules above."""
    d: Dependant = route.dependant
    out: set[int] = set()
    authenticates = principal in _calls(d)
    open_data = (route.path_format or "").startswith("/open/")
    params = d.path_params or d.query_params or d.header_params or route.body_field
    if authenticates:
        out |= {401, 403, 409}
    if d.path_params:
        out.add(404)
    if route.body_field is not None:
        out |= {400, 413}  # 400: a body FastAPI cannot read as its content type
    if params:
        out.add(422)
    if open_data:
        out |= {404, 429}
    if authenticates or open_data:
        out |= {502, 503}
    return out


def declare(app: FastAPI) -> None:
    """Add each route's problem answers to its OpenAPI responses."""
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        if not isinstance(original, APIRoute) or not original.include_in_schema:
            continue
        declared: dict[int | str, Any] = route.responses  # as served (with the routers')
        for status in sorted(statuses(route)):
            declared.setdefault(
                status,
                {"description": _WHY[status], "content": {PROBLEM: {"schema": _SCHEMA}}},
            )
    app.openapi_schema = None
