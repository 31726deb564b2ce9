"""A small keep-alive HTTP/1.1 client for request/answer exchanges on a hot path.

Why not httpx here: one httpx request costs about 1 ms of CPU on this machine (URL model,
anyio streams, h11), more than InfluxDB needs to answer a small query, and the query API
pays it on every request (docs/benchmarks.md). This client writes the request head itself
and parses the answer with httptools (uvicorn's parser, already a dependency): about
0.15 ms per exchange. It does only what InfluxDB's ``/query`` needs: a GET or a POST with
a small body, answers framed by Content-Length, chunks or the end of the connection,
keep-alive connections reused, at most ``max_connections`` open, a total timeout per
request, and a resend on another connection when a reused one turns out to be closed
before any byte of the answer came back (the server dropped it while idle; callers send
only idempotent requests). A fresh connection that fails is an error.
It asks for no compression: on a local network gzip costs both ends more than it saves.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools


class ProtocolError(ConnectionError):
    """The server's answer was not valid HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Connection(asyncio.Protocol):
    """One connection; one exchange at a time (the pool guarantees it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._body: list[bytes] = []
        self._framed = False
        self._headers_done = False
        self.closed = False
        self.received = False  # any byte of the current answer
        self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._parser is None:  # nothing asked: a confused server
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc=ProtocolError(f"invalid HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and self._headers_done and not self._framed and exc is None:
            self.keep_alive = False  # an answer delimited by the end of the connection
            self._finish(Answer(self._parser.get_status_code(), b"".join(self._body)))
        else:
            self._finish(exc=exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self.keep_alive = self._parser.should_keep_alive()
        self._finish(Answer(self._parser.get_status_code(), b"".join(self._body)))

    def _finish(self, answer: Answer | None = None, exc: BaseException | None = None) -> None:
        waiter, self._waiter, self._parser, self._body = self._waiter, None, None, []
        if waiter is None or waiter.done():
            return
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(cast(Answer, answer))

    async def exchange(self, request: bytes) -> Answer:
        assert self._transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._framed = self._headers_done = self.received = False
        self._waiter = self._loop.create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class KeepAlivePool:
    """Keep-alive connections to one ``http://`` or ``https://`` origin (with an optional
    path prefix); ``request`` sends one request and returns the whole answer."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` verifies an https origin (default: the system's CAs)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        https = parts.scheme == "https"
        self._ssl = (ssl_context or ssl.create_default_context()) if https else None
        self._prefix = parts.path.rstrip("/")
        head = {"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": "sensornet"}
        if basic_auth is not None:
            token = base64.b64encode(":".join(basic_auth).encode()).decode()
            head["Authorization"] = f"Basic {token}"
        head.update(headers or {})
        self._head = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        content_type: str = "application/x-www-form-urlencoded",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """``target`` is the path and query, already encoded; ``headers`` are added to the
        pool's own for this request. Raises ``TimeoutError``, ``OSError`` (unreachable,
        reset; ``ProtocolError`` is one) as they come."""
        head = f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._head}"
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        async with self._slots, asyncio.timeout(self._timeout_s):
            while True:
                conn, reused = await self._connection()
                try:
                    answer = await conn.exchange(data)
                except ConnectionError:
                    conn.close()
                    if reused and not conn.received:
                        continue  # dropped while idle: once more, on a fresh connection
                    raise
                except BaseException:  # timeout, cancellation: the connection is in an
                    conn.close()  # unknown state, never reuse it
                    raise
                if conn.keep_alive and not conn.closed and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.close()
                return answer

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(loop),
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl else None,
        )
        return conn, False

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
