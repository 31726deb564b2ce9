"""A short path through the app for the GET routes that need none of FastAPI's per-request
machinery, derived from the app itself.

Why: for a small range query InfluxDB answers in about a millisecond, and FastAPI's own
per-request work (its route resolution, the dependency solver, parameter validation through
its layers) costs about as much CPU again; without this path the small range endpoints
miss the query-overhead target (docs/benchmarks.md, docs/decisions.md).

What: ``FastRoutes`` is an ordinary ASGI middleware, the innermost of the app's (create_app
adds it before any other; it refuses to start anywhere else), so every other middleware,
FastAPI's telemetry and its error pages still see every request. On the first request it
walks the app's routes (``fastapi.routing.iter_route_contexts``, FastAPI's public walk of
included routers) in FastAPI's matching order and takes a GET route when everything about
it is simple enough to run without FastAPI's solver:

- the endpoint is a coroutine that answers a ``Response`` itself (no response model);
- its parameters are the request, path parameters and single-valued query parameters;
- every dependency of the route (its router's too), however nested, takes only the request
  and other such dependencies (e.g. the role check ``api.auth.require`` over the
  ``HTTPBearer`` and ``X-API-Key`` schemes, or open data's rate limit).

For such a route it runs the route's own dependency callables in FastAPI's order (cached
per request, sync ones in the thread pool as FastAPI does), validates each query and path
value with the route's own field (the validation FastAPI applies), and calls the endpoint;
an exception goes to the app's own exception handlers. So roles, rate limits and errors
come from the routes, not from a table here. Anything else goes on to FastAPI unchanged:
another method, a route that does not qualify, a query that is not plain (a parameter
unknown, repeated or empty, a value the field refuses, a required one missing: FastAPI
answers those, with its 422), and every request while ``dependency_overrides`` is set.
``tests/test_api_fast.py`` holds both paths to the same answers, including for a route and
a middleware added to the app after it is created.
"""

from __future__ import annotations

import copy
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import Json
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: The scope key of the (plan, arguments) of a request the short path serves; the layers
#: outside it share the scope, so they (and tests) can tell which requests it served.
SCOPE_KEY = "sensornet.fast"


@dataclass(frozen=True)
class Step:
    """One dependency to run: its callable, what it is given, and the steps it needs."""

    call: Callable[..., Any]
    is_async: bool
    name: str | None  # the parameter it fills in its parent, if any
    request_params: tuple[str, ...]  # given the request (as a Request or HTTPConnection)
    needs: tuple[Step, ...]
    use_cache: bool


@dataclass(frozen=True)
class Plan:
    """A route the short path serves."""

    route: APIRoute  # the app's own route (FastAPI puts it in the scope as "route")
    path: str  # as the app serves it (with the prefixes of the routers above)
    endpoint: Callable[..., Any]
    request_params: tuple[str, ...]
    convertors: dict[str, Convertor[Any]]
    path_fields: dict[str, Any]  # alias -> FastAPI's field (validates as FastAPI does)
    query_fields: dict[str, Any]
    required: frozenset[str]  # query aliases without a default
    defaults: tuple[tuple[str, str, Any], ...]  # (alias, name, default) of the others
    steps: tuple[Step, ...]

    def arguments(
        self, path_args: dict[str, str], query_string: bytes
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(path_params, keyword arguments) when the request is plain, else None."""
        path_params = {k: self.convertors[k].convert(v) for k, v in path_args.items()}
        kwargs: dict[str, Any] = {}
        for alias, field in self.path_fields.items():
            value, errors = field.validate(path_params.get(alias), kwargs, loc=("path", alias))
            if errors:
                return None
            kwargs[field.name] = value
        given = set()
        for alias, raw in _pairs(query_string):
            field = self.query_fields.get(alias)
            if field is None or alias in given or not raw:
                return None
            given.add(alias)
            value, errors = field.validate(raw, kwargs, loc=("query", alias))
            if errors:
                return None
            kwargs[field.name] = value
        if not self.required <= given:
            return None
        for alias, name, default in self.defaults:
            if alias not in given:
                kwargs[name] = default if type(default) in _IMMUTABLE else copy.deepcopy(default)
        return path_params, kwargs


@dataclass(frozen=True)
class Entry:
    """A route a GET request can match fully, in FastAPI's matching order, with its plan
    when the short path serves it."""

    pattern: re.Pattern[str]
    plan: Plan | None


def _is_async(call: Callable[..., Any]) -> bool:
    if inspect.isclass(call):
        return False  # a class as a dependency: FastAPI constructs it in the thread pool
    if inspect.isfunction(call) or inspect.ismethod(call):
        return inspect.iscoroutinefunction(call)
    return inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004


def _yields(call: Callable[..., Any]) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else type(call).__call__
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def _nothing_shared(d: Dependant) -> bool:
    """No header, cookie or body to read, nor a websocket, response, background tasks or
    security scopes to share with FastAPI's machinery (the request itself may be taken,
    as a ``Request`` or an ``HTTPConnection``)."""
    return (
        not (d.header_params or d.cookie_params or d.body_params)
        and d.websocket_param_name is None
        and d.response_param_name is None
        and d.background_tasks_param_name is None
        and d.security_scopes_param_name is None
    )


def _request_params(d: Dependant) -> tuple[str, ...]:
    return tuple(n for n in (d.request_param_name, d.http_connection_param_name) if n)


def _steps(dependencies: list[Dependant]) -> tuple[Step, ...] | None:
    """The dependencies as steps, or None if one of them (at any depth) needs more than
    the request and other dependencies, yields, or is limited to some concurrency."""
    steps = []
    for d in dependencies:
        if (
            d.call is None
            or not _nothing_shared(d)
            or d.path_params
            or d.query_params
            or d.concurrency is not None
            or _yields(d.call)
        ):
            return None
        needs = _steps(d.dependencies)
        if needs is None:
            return None
        steps.append(
            Step(d.call, _is_async(d.call), d.name, _request_params(d), needs, d.use_cache)
        )
    return tuple(steps)


#: Defaults used as they are; any other is copied for each request, as FastAPI does
_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes, datetime, date})

#: Types a path or query value is validated into here; a list (repeated parameter), a
#: model (parameters as a model) or JSON is read differently by FastAPI, so is left to it.
_SCALARS = (str, int, float, bool, type(None), datetime, date)


def _single_value(field: Any) -> bool:
    """A field FastAPI fills from one value under its alias, then validates; its default
    used as it is (no factory, no validation of the default)."""
    info = field.field_info
    kinds = typing.get_args(info.annotation) if typing.get_origin(info.annotation) else ()
    return (
        all(k in _SCALARS for k in (kinds or (info.annotation,)))
        and info.validation_alias is None
        and not info.validate_default
        and info.default_factory is None
        and not any(type(m) is Json for m in info.metadata)
    )


def plan_for(route: Any) -> Plan | None:
    """The plan of one of the app's routes (a ``RouteContext``), or None if FastAPI must
    serve it: every condition in the module docstring, checked on FastAPI's own view of
    the route (its effective dependant, with the dependencies of the routers above it)."""
    original = route.original_route
    if not isinstance(original, APIRoute) or "GET" not in (route.methods or ()):
        return None
    endpoint = route.endpoint
    dependant: Dependant = route.dependant
    if not inspect.iscoroutinefunction(endpoint) or route.response_model is not None:
        return None
    try:
        answers = typing.get_type_hints(endpoint).get("return")
    except (NameError, TypeError):
        return None
    if not (inspect.isclass(answers) and issubclass(answers, Response)):
        return None
    fields = [*dependant.path_params, *dependant.query_params]
    if not _nothing_shared(dependant) or not all(_single_value(f) for f in fields):
        return None
    steps = _steps(dependant.dependencies)
    if steps is None:
        return None
    query = dependant.query_params
    return Plan(
        route=original,
        path=route.path,
        endpoint=endpoint,
        request_params=_request_params(dependant),
        convertors=dict(route.param_convertors),
        path_fields={f.alias: f for f in dependant.path_params},
        query_fields={f.alias: f for f in query},
        required=frozenset(f.alias for f in query if f.field_info.is_required()),
        defaults=tuple(
            (f.alias, f.name, f.default) for f in query if not f.field_info.is_required()
        ),
        steps=steps,
    )


def derive(app: FastAPI) -> list[Entry]:
    """The app's routes in the order FastAPI tries them, each with its plan or None. A
    route only some other method matches is left out (for a GET it is a partial match,
    after which the router goes on); a route without a path pattern (e.g. a host route)
    ends the list, since what it matches is not known here."""
    entries = []
    for route in iter_route_contexts(app.routes):
        pattern = getattr(route, "path_regex", None)
        if pattern is None:
            break
        methods = getattr(route, "methods", None)
        if methods is None or "GET" in methods:
            entries.append(Entry(pattern, plan_for(route)))
    return entries


async def _solve(
    steps: tuple[Step, ...], request: Request, cache: dict[Any, Any]
) -> dict[str, Any]:
    """Run ``steps`` as ``solve_dependencies`` does: each one's own needs first, one result
    per callable and request, sync callables in the thread pool."""
    values: dict[str, Any] = {}
    for step in steps:
        if step.use_cache and step.call in cache:
            value = cache[step.call]
        else:
            kwargs = await _solve(step.needs, request, cache) if step.needs else {}
            for name in step.request_params:
                kwargs[name] = request
            if step.is_async:
                value = await step.call(**kwargs)
            else:
                value = await run_in_threadpool(step.call, **kwargs)
            cache.setdefault(step.call, value)
        if step.name is not None:
            values[step.name] = value
    return values


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    plan, kwargs = scope[SCOPE_KEY]
    request = Request(scope, receive, send)
    kwargs.update(await _solve(plan.steps, request, {}))  # e.g. ``who: Viewer``
    for name in plan.request_params:
        kwargs[name] = request
    response: Response = await plan.endpoint(**kwargs)
    await response(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path the app's router matches (without ``root_path``), as Starlette takes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


class FastRoutes:
    """The middleware; ``api`` is the app it belongs to (``app`` is the rest of its stack:
    exception middleware and router)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        innermost: object = api.user_middleware[-1].cls if api.user_middleware else None
        if innermost is not FastRoutes:
            raise RuntimeError(
                "api.fast.FastRoutes must be the app's innermost middleware (add it before "
                "any other), or the requests it serves would skip the ones inside it"
            )
        self.app, self.api = app, api
        self._entries: list[Entry] | None = None
        # the app's exception handlers, as FastAPI hands them to its ExceptionMiddleware
        # (500 and Exception go to ServerErrorMiddleware, outside this one)
        handlers = {k: v for k, v in api.exception_handlers.items() if k not in (500, Exception)}
        self._serve = ExceptionMiddleware(_serve, handlers=handlers, debug=api.debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not self.api.dependency_overrides
        ):
            if self._entries is None:
                self._entries = derive(self.api)
            path = route_path(scope)
            for entry in self._entries:
                found = entry.pattern.match(path)
                if found is None:
                    continue
                if entry.plan is not None:
                    plain = entry.plan.arguments(found.groupdict(), scope["query_string"])
                    if plain is not None:
                        path_params, kwargs = plain
                        scope["path_params"] = path_params
                        scope["endpoint"] = entry.plan.endpoint
                        scope["route"] = entry.plan.route
                        scope[SCOPE_KEY] = (entry.plan, kwargs)
                        await self._serve(scope, receive, send)
                        return
                break
        await self.app(scope, receive, send)


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
    """``parse_qsl(..., keep_blank_values=True)`` of the query (what Starlette's
    ``QueryParams`` holds), unquoting only the parts that need it; a part without ``=``
    gives an empty value (which ``Plan.arguments`` leaves to FastAPI), as ``parse_qsl``
    does."""
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
