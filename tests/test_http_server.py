"""The HTTP input's own server over a real socket: keep-alive with pipelined requests
answered in order, and what it refuses without reading on (oversized head or body,
malformed requests)."""

from __future__ import annotations

import asyncio

from ingest.inputs.http_server import MAX_HEAD_BYTES, HttpServer, Request, Response


async def echo(request: Request) -> Response:
    await asyncio.sleep(0.05 if request.path == "/slow" else 0)  # answers still in order
    return Response(200, b"%s %s %d" % (request.method.encode(), request.path.encode(),
                                        len(request.body)))  # fmt: skip


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read(1 << 20) + await reader.read(1 << 20)
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    async with HttpServer(echo, "127.0.0.1", 0, max_body=1000) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /fast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nde\r\n0\r\n\r\n"
        )
        answers = b""
        async with asyncio.timeout(5):
            while answers.count(b"HTTP/1.1 200") < 2:
                answers += await reader.read(4096)
        writer.close()
    first, second = answers.index(b"POST /slow 3"), answers.index(b"POST /fast 2")
    assert first < second
    assert b"connection: close" not in answers  # still open for more


async def test_oversized_and_malformed_requests_are_refused_and_closed() -> None:
    async with HttpServer(echo, "127.0.0.1", 0, max_body=1000) as server:
        big_head = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
        assert (await exchange(server.port, big_head)).startswith(b"HTTP/1.1 431 ")
        declared = b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
        answer = await exchange(server.port, declared)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer
        chunked = (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"100\r\n" + b"z" * 256 + b"\r\n") * 5
        )
        assert (await exchange(server.port, chunked)).startswith(b"HTTP/1.1 413 ")
        assert (await exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")).startswith(
            b"HTTP/1.1 400 "
        )
        # and it still answers the next client
        ok = await exchange(server.port, b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"GET /x 0")
