"""The broker login endpoint (``api/broker_auth_app.py``) served by uvicorn."""

from __future__ import annotations

import asyncio

from sensornet.settings import Settings
from wiring.parts import serve_until_stopped


def auth_url(settings: Settings) -> str:
    """What RabbitMQ's HTTP auth backend is pointed at (wiring.rabbitmq)."""
    return f"http://{settings.broker_auth_host}:{settings.broker_auth_port}/broker/auth"


async def run_broker_auth(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    import uvicorn

    from api.broker_auth_app import create_broker_auth_app

    config = uvicorn.Config(
        create_broker_auth_app(settings),
        host=settings.broker_auth_host,
        port=settings.broker_auth_port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        backlog=4096,  # a reconnect storm arrives at once
    )
    await serve_until_stopped(uvicorn.Server(config), stop, ready)
