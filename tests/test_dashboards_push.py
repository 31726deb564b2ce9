"""``dashboards push`` (its own small httpx client, dashboards/push.py says why not a
Grafana client library), against a replayed HTTP exchange.

No Grafana server can run on this machine (no package source offers one), so the push is
tested against tests/data/grafana_push_exchange.json: the exchange with an empty Grafana,
written from the Grafana HTTP API reference, served by a real HTTP server on a free port.
The client, HTTP and our code run for real; what cannot be checked here is that a
live Grafana accepts the payloads — the schema test and the panel-query tests cover the
dashboards' content. If dashboards or alert rules change, regenerate the exchange.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dashboards.push import GrafanaHttp, GrafanaPushError, push
from wiring.services import free_port

EXCHANGE = Path(__file__).parent / "data" / "grafana_push_exchange.json"


class Replay:
    def __init__(self, exchange: list[dict[str, Any]]) -> None:
        self.expected = list(exchange)
        self.seen: list[dict[str, Any]] = []
        self.mismatches: list[str] = []


def _handler(replay: Replay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            got = {"method": self.command, "path": self.path.split("?")[0]}
            replay.seen.append(got | {"body": body, "auth": self.headers.get("Authorization")})
            if not replay.expected:
                replay.mismatches.append(f"unexpected extra request {got}")
                status, answer = 599, {"message": "not in the recording"}
            else:
                step = replay.expected.pop(0)
                if step["request"] != got:
                    replay.mismatches.append(f"expected {step['request']}, got {got}")
                status, answer = step["response"]["status"], step["response"]["body"]
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def grafana_replay() -> Iterator[tuple[str, Replay]]:
    replay = Replay(json.loads(EXCHANGE.read_text())["exchange"])
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(replay))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", replay
    server.shutdown()
    server.server_close()


def test_push_creates_everything_on_an_empty_grafana(grafana_replay: tuple[str, Replay]) -> None:
    url, replay = grafana_replay
    grafana = GrafanaHttp(url, "glsa_test_token")
    report = push(grafana, "http://influxdb:8086", "sensornet", user="reader", password="pw")
    assert replay.mismatches == []
    assert replay.expected == [], "requests in the recording that were never made"
    assert report.datasource == "created" and report.folder == "created"
    assert len(report.dashboards) == 7 and len(report.alert_rules) >= 10
    assert all(s["auth"] == "Bearer glsa_test_token" for s in replay.seen)
    datasource = next(s for s in replay.seen if s["path"] == "/api/datasources")["body"]
    assert datasource["url"] == "http://influxdb:8086"
    assert datasource["jsonData"]["dbName"] == "sensornet"
    assert (datasource["user"], datasource["secureJsonData"]) == ("reader", {"password": "pw"})
    posted = [s["body"] for s in replay.seen if s["path"] == "/api/dashboards/db"]
    assert {b["dashboard"]["uid"] for b in posted} == set(report.dashboards)
    assert all(b["overwrite"] is True and b["folderUid"] == "sensornet" for b in posted)
    rules = [s["body"] for s in replay.seen if s["path"] == "/api/v1/provisioning/alert-rules"]
    assert all(r["folderUID"] == "sensornet" and r["condition"] == "C" for r in rules)


def test_push_reports_a_refusal_naming_the_object(grafana_replay: tuple[str, Replay]) -> None:
    url, replay = grafana_replay
    replay.expected[0] = {
        "request": {"method": "PUT", "path": "/api/datasources/uid/sensornet-influx"},
        "response": {"status": 403, "body": {"message": "Permission denied"}},
    }
    grafana = GrafanaHttp(url, "viewer-token")
    with pytest.raises(GrafanaPushError, match=r"data source sensornet-influx.*Permission denied"):
        push(grafana, "http://influxdb:8086", "sensornet")
