"""The platform's answer to RabbitMQ's HTTP auth backend (``rabbitmq_auth_backend_http``).

A small ASGI app of its own, not a route of the query API: the broker calls it without an
API key (the device's MQTT credentials are what it checks), at every connection, so it
is served on its own listener (``sensornet broker auth-serve``) and scales apart from the
query API. RabbitMQ posts a form to each path and reads ``allow`` or ``deny`` (plain text;
anything else is a deny). Logins are answered by ``LoginCache`` (the registry, cached);
the rules are ``sensornet.broker_access``. Figures at ``GET /stats`` (JSON).
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sensornet.broker_access import (
    ALLOW,
    DENY,
    resource_allowed,
    routing_key_prefix,
    topic_allowed,
    vhost_allowed,
)
from sensornet.registry.logins import LoginCache
from sensornet.registry.store import open_registry
from sensornet.settings import Settings

log = logging.getLogger("sensornet.broker_auth")

_ALLOW = PlainTextResponse(ALLOW)
_DENY = PlainTextResponse(DENY)


async def _form(request: Request) -> dict[str, str]:
    """RabbitMQ's urlencoded form (``python-multipart`` is not needed for that), or the
    query string of a GET (``auth_http.http_method = get``)."""
    raw = (await request.body()).decode("utf-8", "replace") or request.url.query
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


def answer(ok: bool) -> Response:
    return _ALLOW if ok else _DENY


def create_broker_auth_app(settings: Settings, check_s: float = 0.5) -> Starlette:
    key_prefix = routing_key_prefix(settings.topic_prefix)
    cache: LoginCache | None = None

    def logins() -> LoginCache:
        assert cache is not None, "used before the app's lifespan started"
        return cache

    async def user(request: Request) -> Response:
        form = await _form(request)
        username, password = form.get("username", ""), form.get("password", "")
        ok = await logins().login(username, password)
        if not ok:
            log.info("broker login refused user=%s", username)
        return answer(ok)

    async def vhost(request: Request) -> Response:
        form = await _form(request)
        username = form.get("username", "")
        return answer(
            vhost_allowed(str(form.get("vhost", ""))) and await logins().may_connect(username)
        )

    async def resource(request: Request) -> Response:
        form = await _form(request)
        return answer(
            resource_allowed(
                str(form.get("resource", "")),
                str(form.get("name", "")),
                str(form.get("permission", "")),
            )
        )

    async def topic(request: Request) -> Response:
        form = await _form(request)
        ok = topic_allowed(
            key_prefix,
            form.get("username", ""),
            str(form.get("name", "")),
            str(form.get("permission", "")),
            str(form.get("routing_key", "")),
        )
        if not ok:
            log.info(
                "broker topic refused user=%s key=%s permission=%s",
                form.get("username"),
                form.get("routing_key"),
                form.get("permission"),
            )
        return answer(ok)

    async def stats(request: Request) -> Response:
        return JSONResponse({**asdict(logins().stats), "cached": len(logins())})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal cache
        async with open_registry(settings.registry_database_url) as engine:
            cache = LoginCache(engine, check_s)
            yield

    handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {
        "user": user,
        "vhost": vhost,
        "resource": resource,
        "topic": topic,
    }
    routes = [
        Route(f"/broker/auth/{name}", handler, methods=["POST", "GET"])
        for name, handler in handlers.items()
    ]
    routes.append(Route("/broker/auth/stats", stats, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan)
