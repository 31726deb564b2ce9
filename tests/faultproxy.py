"""A real HTTP proxy in front of the real InfluxDB that can be told to fail.

Modes: ``ok`` forwards every request; ``slow`` forwards after a delay (so a test can act
mid-stream); ``error`` answers 500; ``hang`` answers nothing
until the client gives up; ``answer(status, headers, times)`` answers writes with a chosen
status (422, 429 with Retry-After...), the next ``times`` of them or until told otherwise.
It stands for an overloaded or broken InfluxDB (or one of another version), which a test
cannot otherwise summon on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "ok"
        self.delay_s = 0.05
        self._healed = asyncio.Event()
        self.port = 0
        self.requests = 0
        self.status = 500
        self.status_headers: dict[str, str] = {}
        self._times: int | None = None
        self.answered: Counter[int] = Counter()  # writes answered with a chosen status
        self.answered_at: list[float] = []  # when (monotonic), in order
        self._client = httpx.AsyncClient(base_url=upstream, timeout=30)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(
                    next((v for k, v in headers.items() if k.lower() == "content-length"), "0")
                )
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                if self.mode == "hang":
                    await self._healed.wait()  # the client times out meanwhile
                    return
                if self.mode == "slow":
                    await asyncio.sleep(self.delay_s)
                extra = ""
                if self.mode == "status" and target.startswith("/write"):
                    status, payload, ctype = self._chosen()
                    extra = "".join(f"{k}: {v}\r\n" for k, v in self.status_headers.items())
                elif self.mode == "error":
                    status, payload, ctype = 500, b'{"error":"injected fault"}', "application/json"
                else:
                    keep = {
                        k: v
                        for k, v in headers.items()
                        if k.lower() in ("content-type", "content-encoding", "authorization")
                    }
                    r = await self._client.request(method, target, content=body, headers=keep)
                    status, payload = r.status_code, r.content
                    ctype = r.headers.get("content-type", "text/plain")
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n{extra}"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _chosen(self) -> tuple[int, bytes, str]:
        self.answered[self.status] += 1
        self.answered_at.append(time.monotonic())
        if self._times is not None:
            self._times -= 1
            if self._times <= 0:
                self.mode = "ok"
        return self.status, b'{"error":"injected status"}', "application/json"

    def answer(
        self, status: int, headers: dict[str, str] | None = None, times: int | None = None
    ) -> None:
        """Answer ``/write`` with ``status``: the next ``times`` requests, or all until
        ``set_mode("ok")``. Other requests are forwarded."""
        self.status, self.status_headers, self._times = status, headers or {}, times
        self.set_mode("status")

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "hang":
            self._healed.clear()
        else:
            self._healed.set()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FaultProxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self.set_mode("ok")
            server.close()
            await self._client.aclose()
