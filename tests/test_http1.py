"""The keep-alive HTTP/1.1 client that InfluxClient queries with, against real servers on
free ports: a scripted asyncio server for the awkward cases (answer framing, a connection
dropped while idle, a server that never answers, garbage) and the real InfluxDB."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sensornet.errors import InfluxError, InfluxUnavailableError
from sensornet.influx import InfluxClient
from sensornet.keepalive_http import KeepAlivePool, ProtocolError
from wiring.services import free_port


class Scripted:
    """Answers each request with the next scripted reply (None: never answer; b"": close
    the connection instead); records request heads."""

    def __init__(self, replies: list[bytes | None], close_after: bool = False) -> None:
        self.replies, self.close_after = list(replies), close_after
        self.heads: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n")
                     if h.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                await reader.readexactly(length)
                reply = self.replies.pop(0)
                if reply == b"":  # drop the connection without a word
                    break
                if reply is None:  # never answer: wait until the client gives up
                    await reader.read()
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Serve = Callable[["Scripted"], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(script: Scripted) -> str:
        port = free_port()
        servers.append(await asyncio.start_server(script.handle, "127.0.0.1", port))
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_keeps_one_connection_alive_and_sends_the_head(serve: Serve) -> None:
    script = Scripted([ok(b"one"), ok(b"two")])
    pool = KeepAlivePool(await serve(script), basic_auth=("reader", "s3cret"), headers={"X-A": "1"})
    assert (await pool.request("GET", "/query?q=1")).body == b"one"
    answer = await pool.request("POST", "/query", b"q=2")
    assert (answer.status, answer.body) == (200, b"two")
    await pool.aclose()
    assert script.connections == 1
    first, second = script.heads
    assert first.startswith(b"GET /query?q=1 HTTP/1.1\r\n")
    assert b"Authorization: Basic cmVhZGVyOnMzY3JldA==\r\n" in first  # reader:s3cret
    assert b"X-A: 1\r\n" in first and b"accept-encoding" not in first.lower()
    assert second.startswith(b"POST /query HTTP/1.1\r\n") and b"Content-Length: 3\r\n" in second


async def test_chunked_and_connection_delimited_answers(serve: Serve) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    pool = KeepAlivePool(await serve(Scripted([chunked])))
    assert (await pool.request("GET", "/")).body == b"abcde"
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    pool = KeepAlivePool(await serve(Scripted([until_close], close_after=True)))
    assert (await pool.request("GET", "/")).body == b"all of it"


async def test_a_connection_dropped_while_idle_is_replaced(serve: Serve) -> None:
    # The server drops the kept-alive connection just as the next request arrives (as
    # when its idle timeout races the request): the request is sent again on a fresh one.
    script = Scripted([ok(b"one"), b"", ok(b"two")])
    pool = KeepAlivePool(await serve(script))
    assert (await pool.request("GET", "/")).body == b"one"
    assert (await pool.request("GET", "/")).body == b"two"
    assert script.connections == 2
    # Only then: a fresh connection that fails is an error, not an endless retry.
    pool = KeepAlivePool(await serve(Scripted([b""])))
    with pytest.raises(ConnectionError):
        await pool.request("GET", "/")


async def test_a_truncated_answer_is_an_error(serve: Serve) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    pool = KeepAlivePool(await serve(Scripted([cut], close_after=True)))
    with pytest.raises(ConnectionError):
        await pool.request("GET", "/")


async def test_timeout_unreachable_and_garbage(serve: Serve) -> None:
    pool = KeepAlivePool(await serve(Scripted([None])), timeout_s=0.3)
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/")
    with pytest.raises(OSError):
        await KeepAlivePool(f"http://127.0.0.1:{free_port()}").request("GET", "/")
    pool = KeepAlivePool(await serve(Scripted([b"SMTP ready\r\n\r\n"])))
    with pytest.raises(ProtocolError):
        await pool.request("GET", "/")


async def test_influx_client_maps_transport_failures(serve: Serve) -> None:
    hanging = InfluxClient(await serve(Scripted([None])), "db", timeout_s=0.3)
    with pytest.raises(InfluxUnavailableError, match="timed out"):
        await hanging.query("SHOW DATABASES")
    await hanging.aclose()
    gone = InfluxClient(f"http://127.0.0.1:{free_port()}", "db")
    with pytest.raises(InfluxUnavailableError, match="unreachable"):
        await gone.query("SHOW DATABASES")
    await gone.aclose()


async def test_against_influxdb(influx: InfluxClient) -> None:
    await influx.create_database()  # a POST
    await influx.write(b"m,sensor_id=a v=1 1\nm,sensor_id=a v=2 2\n")
    q = 'SELECT "v" FROM "m" WHERE "sensor_id" = $id AND time > $after'
    found = await asyncio.gather(*(influx.query(q, {"id": "a", "after": 0}) for _ in range(20)))
    assert all(s[0]["values"] == [[1, 1.0], [2, 2.0]] for s in found)  # 20 over at most 8
    with pytest.raises(InfluxError, match="missing parameter"):
        await influx.query('SELECT "v" FROM "m" WHERE time > $missing')
