"""The query API's extra hop with none of its work, for ``sensornet bench query``.

An ASGI app, served by uvicorn as the API is, that forwards ``GET /query?...`` to InfluxDB
unchanged over the API's own client (``sensornet.keepalive_http``) and answers InfluxDB's status and
bytes. What the bench measures through it is the floor any HTTP API in its own process
pays on that machine for one more process hop (docs/benchmarks.md).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from sensornet.keepalive_http import KeepAlivePool
from sensornet.settings import Settings


class ForwardQueries:
    def __init__(self, influx_url: str) -> None:
        self._influx_url = influx_url
        self._pool: KeepAlivePool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._pool is None or scope["type"] != "http" or scope["path"] != "/query":
            await _answer(send, 404, b"only /query", b"text/plain")
            return
        target = "/query?" + scope["query_string"].decode("latin-1")
        answer = await self._pool.request("GET", target)
        await _answer(send, answer.status, answer.body, b"application/json")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._pool = KeepAlivePool(self._influx_url, timeout_s=120)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    await self._pool.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app() -> ForwardQueries:
    """For ``uvicorn --factory``; InfluxDB's URL from the settings, as the API takes it."""
    return ForwardQueries(Settings().influx_url)
