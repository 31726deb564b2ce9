"""A small northbound receiver: what an integrator's endpoint does (verify the signature,
dedupe by event id), with faults on demand. The tests and ``sensornet bench northbound``
push to it; docs/northbound.md shows the same verification without any of our code.

HTTP/1.1 with keep-alive on ``asyncio.start_server`` (no framework: the benchmark compares
the pusher with a bare client against this receiver, so its own cost should be small)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Self

import orjson

from sensornet.northbound.signing import SignatureError, verify


@dataclass
class Faults:
    """``status``: answer this instead of 200 (without keeping the events); ``delay_s``:
    keep the events, then wait this long before answering (a client timing out sends them
    again: the duplicates a receiver must drop)."""

    status: int = 200
    delay_s: float = 0.0


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)  # in arrival order, duplicates too
    ids: set[str] = field(default_factory=set)
    arrival: dict[str, float] = field(default_factory=dict)  # first arrival per id
    requests: int = 0
    refused: int = 0
    bad_signatures: int = 0
    last_new_at: float = 0.0  # wall clock (time.time) of the last request with a new id

    @property
    def unique(self) -> list[dict[str, Any]]:
        """Events without their duplicates, first arrival kept: what a receiver keeps."""
        seen: set[str] = set()
        out = []
        for e in self.events:
            if e["id"] not in seen:
                seen.add(e["id"])
                out.append(e)
        return out


class Receiver:
    def __init__(self, secret: str | None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret, self.host, self.port = secret, host, port
        self.faults = Faults()
        self.got = Received()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stats = b""
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/events"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Down: the port refuses connections (open ones are cut) until ``start``."""
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            if self._handlers:  # each ends on its closed connection
                await asyncio.wait(list(self._handlers), timeout=5)
            await self._server.wait_closed()
            self._server = None

    async def wait_for_ids(self, n: int, timeout_s: float) -> bool:
        """Until ``n`` distinct events arrived (True) or the time is up (False)."""
        async with self._arrived:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._arrived.wait_for(lambda: len(self.got.ids) >= n)
        return len(self.got.ids) >= n

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = _headers(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = await self._handle(headers, body)
                answer, self._stats = self._stats, b""
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-length: %d\r\nconnection: keep-alive\r\n\r\n"
                    % (status, len(answer))
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, headers: dict[str, str], body: bytes) -> int:
        if headers[":path"] == "/stats":  # for a receiver run as its own process
            self._stats = orjson.dumps(
                {"ids": len(self.got.ids), "events": len(self.got.events),
                 "bad_signatures": self.got.bad_signatures, "last_new_at": self.got.last_new_at}
            )  # fmt: skip
            return 200
        self.got.requests += 1
        if self.faults.status != 200:
            self.got.refused += 1
            return self.faults.status
        if self.secret is not None:
            try:
                verify(self.secret, headers, body, int(time.time()))
            except SignatureError:
                self.got.bad_signatures += 1
                return 401
        now = time.monotonic()
        fresh = len(self.got.ids)
        for e in orjson.loads(body):
            self.got.events.append(e)
            if e["id"] not in self.got.ids:
                self.got.ids.add(e["id"])
                self.got.arrival[e["id"]] = now
        if len(self.got.ids) > fresh:
            self.got.last_new_at = time.time()
        async with self._arrived:
            self._arrived.notify_all()
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        return 200


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    out = {":path": parts[1] if len(parts) > 1 else ""}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


async def _serve_until_stopped(port: int, secret: str | None) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Receiver(secret, port=port):
        await stop.wait()


def main() -> None:
    """``python -m alarms.northbound.receiver --port P [--secret whsec_...]``: the receiver
    as a process of its own (the benchmark's); ``GET /stats`` says what it got."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default=None)
    args = parser.parse_args()
    asyncio.run(_serve_until_stopped(args.port, args.secret))


if __name__ == "__main__":
    main()
