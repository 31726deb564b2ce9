"""One small HTTP listener per long-running process: Prometheus ``/metrics`` plus the
liveness and readiness probes that systemd, compose and a load balancer ask.

- ``/livez`` (alias ``/healthz``): the process's event loop still runs a callback within
  ``LOOP_TIMEOUT_S``. A wedged loop is what a restart cures; a dependency that is down is
  not, so liveness never looks at dependencies.
- ``/readyz``: the process's own readiness checks (e.g. the ingester receives and can make
  batches durable), each named in the JSON body; 503 when one fails.
- anything else: the Prometheus exposition of ``registry``.

It runs in a thread (as ``prometheus_client``'s own server does), so a busy or stuck loop
cannot hide its own state from the probe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

LOOP_TIMEOUT_S = 5.0

ReadinessChecks = Callable[[], Mapping[str, bool]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes come every few seconds: no access log line for each."""


def loop_responds(loop: asyncio.AbstractEventLoop, timeout_s: float = LOOP_TIMEOUT_S) -> bool:
    """The loop runs a callback from another thread within ``timeout_s``."""
    done = threading.Event()
    try:
        loop.call_soon_threadsafe(done.set)
    except RuntimeError:  # closed
        return False
    return done.wait(timeout_s)


def probe_app(
    metrics: Callable[..., Iterable[bytes]],
    loop: asyncio.AbstractEventLoop,
    ready: ReadinessChecks,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/livez", "/healthz"):
            checks = {"event_loop": loop_responds(loop)}
        elif path == "/readyz":
            checks = {"event_loop": loop_responds(loop), **_safely(ready)}
        else:
            return metrics(environ, start_response)
        ok = all(checks.values())
        body = json.dumps(
            {"status": "ok" if ok else "unavailable", "checks": checks,
             "failing": [name for name, good in checks.items() if not good]}
        ).encode()  # fmt: skip
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def _safely(ready: ReadinessChecks) -> Mapping[str, bool]:
    """A check that raises is a failing check, not a crashed probe."""
    try:
        return dict(ready())
    except Exception:
        return {"readiness_checks": False}


@contextlib.contextmanager
def serve_probes(
    port: int, host: str, registry: CollectorRegistry, ready: ReadinessChecks
) -> Iterator[int]:
    """Serve while the block runs; call from inside the running event loop. Yields the
    port (useful with 0 only in tests: callers treat 0 as "off" before calling)."""
    app = probe_app(make_wsgi_app(registry), asyncio.get_running_loop(), ready)
    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="probes", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
