"""A small HTTP/1.1 server for the HTTP input: asyncio protocol + httptools (uvicorn's
parser, already a dependency), keep-alive, pipelining answered in order, bodies bounded.

Why not uvicorn + Starlette here (docs/decisions.md, "HTTP input"): uvicorn's ``serve()``
takes over the process's SIGINT/SIGTERM handlers, which the ingester owns (stop = drain,
write, ack), and an ASGI request costs several objects and awaits the input does not need.
This server does only what a push endpoint needs: POST/GET with a Content-Length or chunked
body of at most ``max_body`` bytes (413 past it, read no further), one handler coroutine
per request, answers in request order per connection, idle connections closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Self

import httptools

log = logging.getLogger("sensornet.ingest.http")

IDLE_TIMEOUT_S = 75.0  # a keep-alive connection with no request for this long is closed
MAX_QUEUED = 64  # pipelined requests of one connection waiting; past it reading pauses
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; past it 431 and the connection closed


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    peer: str = ""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, keep_alive: bool) -> bytes:
        reason = HTTPStatus(self.status).phrase
        head = [f"HTTP/1.1 {self.status} {reason}", f"content-length: {len(self.body)}"]
        if self.body:
            head.append(f"content-type: {self.content_type}")
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        if not keep_alive:
            head.append("connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + self.body


Handler = Callable[[Request], Awaitable[Response]]


class _Refused(Exception):
    """Raised from a parser callback to stop reading (httptools wraps it in
    ``HttpParserCallbackError``); the answer waits in ``_Connection.refusal``."""


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[tuple[Request, bool] | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.handling = False  # a request is being answered (it may wait for durability)
        self.paused = False
        self.closing = False
        self.idle: asyncio.TimerHandle | None = None
        self.peer = ""
        self.refusal: Response | None = None

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.server.connections.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._answer_in_order())
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(Response(400, b'{"title":"upgrade not supported"}'))
        except httptools.HttpParserError as exc:  # a refusal raised from a callback, too
            if self.refusal is None:
                if isinstance(exc, httptools.HttpParserCallbackError):
                    log.exception("HTTP input: parser callback failed")
                text = f'{{"title":"malformed HTTP request","detail":"{type(exc).__name__}"}}'
                self.refusal = Response(400, text.encode(), "application/problem+json")
            self._refuse(self.refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        if self.worker is not None:
            self.worker.cancel()

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url, self.headers, self.body, self.body_size = b"", {}, [], 0
        self.head_size = 0

    def _head_bytes(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD_BYTES:
            body = b'{"type":"about:blank","title":"Request header fields too large","status":431}'
            self.refusal = Response(431, body, "application/problem+json")
            raise _Refused

    def on_url(self, url: bytes) -> None:
        self._head_bytes(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes(len(name) + len(value))
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            self.refusal = self.server.too_large()
            raise _Refused

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body:  # chunked, or a lying Content-Length
            self.refusal = self.server.too_large()
            raise _Refused
        self.body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        request = Request(
            self.parser.get_method().decode("latin-1"),
            (parsed.path or b"/").decode("utf-8", "replace"),
            (parsed.query or b"").decode("utf-8", "replace"),
            self.headers,
            b"".join(self.body),
            self.peer,
        )
        self.queue.put_nowait((request, self.parser.should_keep_alive()))
        if self.queue.qsize() >= MAX_QUEUED and self.transport and not self.paused:
            self.transport.pause_reading()
            self.paused = True

    # -- answering ----------------------------------------------------------------------
    async def _answer_in_order(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            request, keep_alive = item
            if self.paused and self.queue.qsize() < MAX_QUEUED // 2 and self.transport:
                self.transport.resume_reading()
                self.paused = False
            self.handling = True
            try:
                response = await self.server.handler(request)
            except Exception:
                log.exception("HTTP input: the handler failed on %s %.200s", request.method,
                              request.path)  # fmt: skip
                response = Response(
                    500, b'{"title":"internal error","status":500}', "application/problem+json"
                )
            finally:
                self.handling = False
            keep_alive = keep_alive and not self.server.closing
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(response.encode(keep_alive))
            if not keep_alive:
                self.transport.close()
                return

    def _refuse(self, response: Response) -> None:
        """Answer a request that cannot be read on (too large, malformed) and close."""
        self.queue.put_nowait(None)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response.encode(keep_alive=False))
            self.transport.close()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.server.idle_timeout_s, self._idle_close)

    def _idle_close(self) -> None:
        if self.queue.empty() and not self.handling and self.transport is not None:
            self.transport.close()
        else:
            self._arm_idle()


class HttpServer:
    """Listens while entered; ``port`` is the bound port (ask for 0 to get a free one)."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        max_body: int,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.host, self.port = host, port
        self.max_body = max_body
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None

    def too_large(self) -> Response:
        body = (
            '{"type":"about:blank","title":"Request body too large","status":413,'
            f'"detail":"at most {self.max_body} bytes per request"}}'
        )
        return Response(413, body.encode(), "application/problem+json")

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closing = True
        if self._server is not None:
            self._server.close()
        workers = [c.worker for c in self.connections if c.worker is not None]
        for connection in list(self.connections):
            connection.queue.put_nowait(None)  # answer what was received, then stop
        if workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*workers, return_exceptions=True)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
