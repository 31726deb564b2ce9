"""A request body costs nothing before its sender is authenticated, and never more than
its route allows.

Why: FastAPI reads and parses a route's body before it runs the route's dependencies, so
an anonymous client could make the API read and parse 100 MB of JSON only to be told 401
(peak RSS 443 MB, issue 23), and a malformed body was answered 422 before 401.

What: ``BodyGuard`` is an ASGI middleware (outside ``api.fast.FastRoutes``, which serves
only body-less GET routes). For a request that matches a route taking a body, in FastAPI's
matching order, it

1. authenticates first, with the route's own dependency (``api.auth.principal`` over the
   ``HTTPBearer`` and ``X-API-Key`` schemes) when the route has it: a missing, unknown or
   expired key is the route's own 401 problem, answered without reading a byte of body;
2. refuses a ``Content-Length`` above the route's cap with a 413 problem, unread;
3. otherwise reads the body itself, at most cap + 1 bytes (a chunked body over the cap is
   a 413 problem once the cap is passed), and hands the bytes on to the route.

The cap is the route's ``max_body_size`` (FastAPI's own route setting, which Starlette
also enforces behind this, as plain text) or ``DEFAULT_MAX_BODY`` when the route sets none;
``route_caps`` lists them for docs/api.md and its test. Routes without a body are not
touched: nothing reads what a client sends them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import presented, principal
from api.fast import route_path
from api.problems import Problem, known_problem

#: The cap of a route that declares none: a sensor, a key or an acknowledgement is a few
#: hundred bytes; 64 KiB leaves room for long descriptions without inviting abuse.
DEFAULT_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Guarded:
    """A route that takes a body: what it matches, its cap, whether it authenticates."""

    pattern: re.Pattern[str]
    methods: frozenset[str]
    path: str
    max_body: int
    authenticates: bool


@dataclass(frozen=True)
class Passed:
    """A route without a body that a request may match first (ends the search)."""

    pattern: re.Pattern[str]
    methods: frozenset[str] | None


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    for d in dependant.dependencies:
        if d.call is not None:
            found.add(d.call)
        found |= _calls(d)
    return found


def derive(app: FastAPI) -> list[Guarded | Passed]:
    """The app's routes in FastAPI's order; a route without a path pattern ends the list."""
    out: list[Guarded | Passed] = []
    for route in iter_route_contexts(app.routes):
        pattern = getattr(route, "path_regex", None)
        if pattern is None:
            break
        methods = getattr(route, "methods", None)
        methods = frozenset(methods) if methods is not None else None
        body = getattr(route, "body_field", None)
        if isinstance(route.original_route, APIRoute) and body is not None and methods:
            cap = getattr(route, "max_body_size", None)
            out.append(
                Guarded(
                    pattern,
                    methods,
                    route.path or "",
                    DEFAULT_MAX_BODY if cap is None else cap,
                    principal in _calls(route.dependant),
                )
            )
        else:
            out.append(Passed(pattern, methods))
    return out


def route_caps(app: FastAPI) -> dict[str, int]:
    """``"METHOD /path"`` → the body cap in bytes, for every route taking a body."""
    return {
        f"{m} {g.path}": g.max_body
        for g in derive(app)
        if isinstance(g, Guarded)
        for m in sorted(g.methods)
    }


def _too_large(cap: int) -> Problem:
    return Problem(
        413,
        "Request body too large",
        f"this route takes at most {cap} bytes of body (docs/api.md)",
        max_bytes=cap,
    )


class BodyGuard:
    """The middleware; ``api`` is the app whose routes it guards."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app, self.api = app, api
        self._routes: list[Guarded | Passed] | None = None
        self._methods: frozenset[str] = frozenset()

    def _match(self, scope: Scope) -> Guarded | None:
        if self._routes is None:
            self._routes = derive(self.api)
            self._methods = frozenset(
                m for r in self._routes if isinstance(r, Guarded) for m in r.methods
            )
        if scope["method"] not in self._methods:
            return None
        path = route_path(scope)
        for route in self._routes:
            if route.pattern.match(path) is None:
                continue
            if route.methods is not None and scope["method"] not in route.methods:
                continue  # a partial match: FastAPI goes on too
            return route if isinstance(route, Guarded) else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            if route.authenticates:
                await presented(request)
            body = await self._read(scope, receive, route.max_body)
        except Problem as exc:
            response = known_problem(exc, request.url.path)
            assert response is not None
            # the body stays unread: the server closes the connection after the answer
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _read(scope: Scope, receive: Receive, cap: int) -> bytes:
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise _too_large(cap)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise _too_large(cap)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read here, as one message; then the server's own (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
