"""The receivers' relay: Alertmanager 0.25 has no WeCom group-robot or DingTalk receiver,
so it posts those notifications (its generic webhook format, version 4) here, and the
relay posts them on to the robots in their own formats (``alarms.robots``).

It holds the robots' URLs and DingTalk signing secrets (from settings, never in a
generated file). A robot that fails or answers ``errcode != 0`` makes the relay answer 502,
so Alertmanager retries the notification as it would a failed native receiver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from alarms.robots import dingtalk_message, dingtalk_url, wecom_message
from alarms.routing import Routing
from sensornet.errors import ConfigError
from sensornet.settings import Settings

log = logging.getLogger("sensornet.alarms.relay")


def relay_app(routing: Routing, secrets: dict[str, str], timeout_s: float = 10.0) -> Starlette:
    """``POST /robot/<receiver>`` for each WeCom/DingTalk receiver of ``routing``."""
    robots = {n: r for n, r in routing.receivers.items() if r.kind in ("wecom", "dingtalk")}
    missing = [s for s in routing.secrets_needed() if s not in secrets]
    if missing:
        raise ConfigError(f"the relay needs secrets {missing}: add them to SENSORNET_ALERT_SECRETS")
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            state["http"] = http
            yield

    async def robot(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        receiver = robots.get(name)
        if receiver is None:
            return JSONResponse({"error": f"no robot receiver {name!r}"}, status_code=404)
        try:
            notification = orjson.loads(await request.body())
            if not isinstance(notification, dict) or "alerts" not in notification:
                raise ValueError("not an Alertmanager webhook notification")
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        url = secrets[f"{name}.url"]
        message: dict[str, Any]
        if receiver.kind == "wecom":
            message = wecom_message(notification)
        else:
            message = dingtalk_message(notification)
            url = dingtalk_url(url, secrets.get(f"{name}.secret"), int(time.time() * 1000))
        try:
            r = await state["http"].post(url, json=message)
            answer = r.json() if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("robot %s unreachable: %r", name, exc)
            return JSONResponse({"error": "robot unreachable"}, status_code=502)
        if r.status_code != 200 or answer.get("errcode") != 0:
            log.warning("robot %s refused: HTTP %s %s", name, r.status_code, r.text[:300])
            return JSONResponse({"error": "robot refused", "status": r.status_code}, 502)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/robot/{name}", robot, methods=["POST"])], lifespan=lifespan)


def relay_secrets(settings: Settings, routing: Routing) -> dict[str, str]:
    return {
        name: settings.alert_secret(name)
        for name in routing.secrets_needed()
        if name in settings.alert_secret_names()
    }


async def run_relay(
    settings: Settings, routing: Routing, stop: asyncio.Event, port: int | None = None
) -> None:
    """Serve the relay until ``stop`` (an asyncio.Event) is set."""
    app = relay_app(routing, relay_secrets(settings, routing))
    config = uvicorn.Config(
        app,
        host=settings.alert_relay_host,
        port=port or settings.alert_relay_port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="relay")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task
