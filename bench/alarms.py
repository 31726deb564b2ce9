"""``sensornet bench alarms``: end-to-end alarm latency, from a reading's arrival at the
broker to the notification at a receiver, through every real part: Mosquitto, the
ingester, InfluxDB, the alarm runner, Alertmanager and an HTTP receiver (all on loopback,
started here on free ports).

Readings that cross the ``waterlogging_depth`` rule (no minimum duration) are published
one sensor at a time, spaced so that arrivals fall at every phase of the runner's round;
the receiver notes when each sensor's first firing notification arrives. The figure that
bounds the result is the runner's round (``--interval``): a reading waits for the next
round, on average half of it. So the JSON line gives p50/p99/max and, as a ratio, p50
over that interval (no absolute bar: the issue asks for the figures, printed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import yaml

from alarms.runner import run_alarms
from bench.private import bench_settings, private_influxd
from sensornet.bulk_publisher import BulkPublisher
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.topics import device_topic
from wiring.alerting import alertmanager_service
from wiring.parts import prepare_storage, register_fleet, run_ingester
from wiring.services import Mosquitto, broker_acl, free_port


@contextlib.contextmanager
def _receiver(seen: dict[str, float]) -> Iterator[int]:
    """An HTTP receiver noting when each sensor's first firing alert arrives."""
    port = free_port()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.time()
            body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            for alert in body.get("alerts", []):
                sensor = alert.get("labels", {}).get("sensor")
                if alert.get("status") == "firing" and sensor and sensor not in seen:
                    seen[sensor] = at
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_alarm_latency(alarms: int, interval_s: float, progress: Any = None) -> dict[str, Any]:
    seen: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-") as tmp, _receiver(seen) as hook:
        root = Path(tmp)
        routing = root / "routing.yaml"
        routing.write_text(yaml.safe_dump({
            "version": 1, "group_by": ["alarm_id"], "group_wait": "0s",
            "group_interval": "1s", "repeat_interval": "1h",
            "receivers": {"bench": {"webhook": {"url": f"http://127.0.0.1:{hook}/"}}},
            "default": ["bench"],
        }))  # fmt: skip
        settings = bench_settings(
            root,
            ingest_batch_interval_s=0.05,
            ingest_metrics_port=0,
            alarm_metrics_port=0,
            alarm_interval_s=interval_s,
            alertmanager_url=f"http://127.0.0.1:{free_port()}",
            alert_routing_file=routing,
            alert_resend_s=60.0,
            mqtt_fleet_password=secrets.token_urlsafe(16),
            api_port=free_port(),
        )
        broker = Mosquitto(
            name="mosquitto",
            home=root / "mosquitto",
            port=settings.mqtt_port,
            users={
                settings.mqtt_ingest_user: settings.mqtt_ingest_password.get_secret_value(),
                settings.mqtt_fleet_user: settings.fleet_password(),
            },
            acl=broker_acl(settings.topic_prefix, settings.mqtt_ingest_user,
                           settings.mqtt_fleet_user),
        )  # fmt: skip
        influxd = private_influxd(root, settings)
        am = alertmanager_service(settings, home=root / "alertmanager")
        started = []
        try:
            for service in (broker, influxd, am):
                service.start()
                started.append(service)
            return await _measure(settings, alarms, interval_s, seen, progress)
        finally:
            for service in reversed(started):
                service.stop()


async def _measure(
    settings: Settings, n: int, interval_s: float, seen: dict[str, float], progress: Any
) -> dict[str, Any]:
    await prepare_storage(settings)
    fleet = [
        DeviceInfo(f"WL-B{i:04d}", "waterlogging", "jingansi", 31.2235, 121.447, "active")
        for i in range(n)
    ]
    await register_fleet(settings, fleet)
    stop = asyncio.Event()
    ready_ingest, ready_alarms = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(run_ingester(settings, stop, ready_ingest)),
        asyncio.create_task(run_alarms(settings, stop, ready_alarms)),
    ]
    arrived: dict[str, float] = {}
    try:
        await asyncio.wait_for(asyncio.gather(ready_ingest.wait(), ready_alarms.wait()), 60)
        publisher = BulkPublisher(settings.mqtt_host, settings.mqtt_port, "bench-alarms",
                                  settings.mqtt_fleet_user, settings.fleet_password())  # fmt: skip
        # arrivals at every phase of the runner's round: a step that is not a divisor of it
        step = interval_s * 0.37
        for i, device in enumerate(fleet):
            topic = device_topic(settings.topic_prefix, device.id, "readings")
            payload = json.dumps({"depth": 30.0 + i % 7}).encode()
            await publisher.publish_all([(topic.encode(), payload)])
            arrived[device.id] = time.time()  # acknowledged by the broker: arrived
            if progress:
                progress(f"published {i + 1}/{n}")
            await asyncio.sleep(step)
        deadline = time.monotonic() + 3 * interval_s + 30
        while True:
            if len(seen) >= n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [seen[s] - arrived[s] for s in arrived if s in seen]
    if not latencies:
        return {"bench": "alarms", "alarms": n, "delivered": 0, "lost": n}
    p50 = statistics.median(latencies)
    return {
        "bench": "alarms",
        "alarms": n,
        "delivered": len(latencies),
        "lost": n - len(latencies),
        "interval_s": interval_s,
        "p50_s": round(p50, 3),
        "p99_s": round(_percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
        "min_s": round(min(latencies), 3),
        # a reading waits on average half a round for the runner: ~0.5 + the rest
        "ratio": round(p50 / interval_s, 3),
    }
