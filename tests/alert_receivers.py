"""Real receivers on loopback for the notification tests: an HTTP server that records what
it is sent (and can fail or stall on purpose), and an SMTP server (aiosmtpd) that keeps
the mail it receives. Both run in their own threads, like the remote systems they stand
for, so a test's event loop cannot hide a blocking call."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

from wiring.services import free_port


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class HttpReceiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    #: path -> (status, body) answered instead of 200 {"errcode": 0, "errmsg": "ok"}
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    #: checked on every request: a problem it returns becomes a 400 with that message
    check: Callable[[Received], str | None] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in list(self.received) if r.path == path]


@contextlib.contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    recv = HttpReceiver(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            # keep_blank_values and no decoding beyond the standard: the signature check
            # sees exactly what a robot would
            query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
            got = Received(parsed.path, query, dict(self.headers.items()), body)
            problem = recv.check(got) if recv.check else None
            if problem:
                recv.problems.append(problem)
                status, answer = 400, {"errcode": 1, "errmsg": problem}
            else:
                recv.received.append(got)
                ok = (200, {"errcode": 0, "errmsg": "ok"})
                status, answer = recv.answers.get(parsed.path, ok)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", recv.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recv
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    mailbox: _Mailbox

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Message]:
        return list(self.mailbox.messages)


@contextlib.contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()


def hook_routing(folder: Path, hook_url: str, **timing: str) -> Path:
    """A routing file (docs/alerting.md) that sends every alarm, one group per alarm, to
    the webhook at ``hook_url``/hook; ``timing`` overrides Alertmanager's waits."""
    doc = {
        "version": 1, "group_by": ["alarm_id"], "group_wait": "200ms",
        "group_interval": "1s", "repeat_interval": "2s", **timing,
        "receivers": {"hook": {"webhook": {"url": f"{hook_url}/hook"}}},
        "default": ["hook"],
    }  # fmt: skip
    path = folder / "routing.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
