"""``sensornet bench http-listener``: the HTTP input's server (``ingest/inputs/http_server.py``)
against uvicorn + Starlette on the same work, to choose the listener by measurement
(docs/decisions.md, "HTTP input").

Each server runs in its own process on the default asyncio loop (as the ingester does),
with a handler that takes the body and answers a small JSON; a keep-alive client pushes
``requests`` bodies of ``body_bytes`` over ``concurrency`` connections. Reported per
server: requests/s and the server process's CPU per request (from /proc), the figure that
matters on a machine where the ingester shares two cores with InfluxDB.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from bench.procfs import process_cpu_s
from sensornet.keepalive_http import KeepAlivePool
from wiring.services import free_port

SERVERS = ("own", "uvicorn")


async def _serve_own(port: int) -> None:
    from ingest.inputs.http_server import HttpServer, Request, Response

    async def handle(request: Request) -> Response:
        return Response(200, b'{"durable":true,"refused":0,"bytes":%d}' % len(request.body))

    async with HttpServer(handle, "127.0.0.1", port, 1024 * 1024):
        await asyncio.Event().wait()


def _serve_uvicorn(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def handle(request: Request) -> Response:
        body = await request.body()
        payload = b'{"durable":true,"refused":0,"bytes":%d}' % len(body)
        return Response(payload, media_type="application/json")

    app = Starlette(routes=[Route("/v1/devices/{id}/readings", handle, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="asyncio",
                log_level="warning", access_log=False)  # fmt: skip


async def _one(kind: str, requests: int, body: bytes, concurrency: int) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - its pid is what we measure
        [sys.executable, "-m", "bench.http_listener", kind, str(port)]
    )
    pool = KeepAlivePool(f"http://127.0.0.1:{port}", max_connections=concurrency)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await pool.request("POST", "/v1/devices/X/readings", body, "application/json")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        left = iter(range(requests))

        async def worker() -> None:
            for _ in left:
                answer = await pool.request("POST", "/v1/devices/X/readings", body,
                                            "application/json")  # fmt: skip
                if answer.status != 200:
                    raise RuntimeError(f"{kind}: {answer.status}")

        cpu0 = process_cpu_s(proc.pid) or 0.0
        t = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - t
        cpu = (process_cpu_s(proc.pid) or 0.0) - cpu0
    finally:
        await pool.aclose()
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "requests_per_s": round(requests / elapsed),
        "server_cpu_us_per_request": round(cpu / requests * 1e6, 1),
    }


async def run_listener_bench(
    requests: int, body_bytes: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    body = b"[" + b",".join([b'{"ts":1732500000,"pm25":12.5}'] * (body_bytes // 30)) + b"]"
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for kind in SERVERS:
            got = await _one(kind, requests, body, concurrency)
            if kind not in best or got["requests_per_s"] > best[kind]["requests_per_s"]:
                best[kind] = got
    own, uv = best["own"], best["uvicorn"]
    return {
        "bench": "http-listener",
        "requests": requests,
        "body_bytes": len(body),
        "concurrency": concurrency,
        "rounds": rounds,
        **{f"{kind}_{k}": v for kind, figures in best.items() for k, v in figures.items()},
        "cpu_ratio_uvicorn_to_own": round(
            uv["server_cpu_us_per_request"] / max(own["server_cpu_us_per_request"], 0.1), 2
        ),
    }


if __name__ == "__main__":  # the server side: python -m bench.http_listener <kind> <port>
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "own":
        asyncio.run(_serve_own(port))
    else:
        _serve_uvicorn(port)
