"""Every request gets an id: the caller's ``X-Request-ID`` when it is a sane token (a
proxy's or a client's own, so one id follows a request through nginx and the API), else
a new one. It is set for the request's log records (``sensornet.logs.request_id``) and
sent back in the answer's ``X-Request-ID``, so a user's report finds its log lines.

A pure ASGI middleware: no body buffering, nothing for requests it does not touch."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensornet.logs import request_id

HEADER = b"x-request-id"
SANE = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), b"")
        rid = given if SANE.match(given) else uuid.uuid4().hex.encode()
        token = request_id.set(rid.decode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
