"""What the northbound tests share: readings written as the ingester writes them, a
subscription stored as the API stores it, settings that push quickly, the pusher as a
process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.northbound import store
from sensornet.northbound.secretbox import box_from_settings
from sensornet.northbound.signing import new_secret
from sensornet.northbound.spec import Filter, Kind, Spec
from sensornet.registry.store import open_registry
from sensornet.settings import Settings

SENSORS = [("AQ-N1", "jingansi"), ("AQ-N2", "beizhan"), ("AQ-N3", "beizhan")]


def fast(settings: Settings, **over: Any) -> Settings:
    """Short settle, poll, timeout and backoff, so faults play out in seconds."""
    values: dict[str, Any] = {
        "northbound_settle_s": 0.3,
        "northbound_poll_s": 0.1,
        "northbound_timeout_s": 1.0,
        "northbound_backoff_max_s": 0.5,
        "northbound_batch_size": 50,
        "northbound_metrics_port": 0,  # on by default (9466): not in tests run side by side
        # every late point noted, so no new subscription is held back ~17 s (the late notes'
        # tests set "owed", the default, and show what it saves)
        "northbound_late_notes": "always",
    }
    values.update(over)
    return settings.model_copy(update=values)


async def write_readings(
    influx: InfluxClient, start_ns: int, per_sensor: int, step_ns: int = 10**8
) -> list[str]:
    """``per_sensor`` air-quality readings of each of ``SENSORS`` from ``start_ns``; returns
    the event ids the pusher must deliver for them."""
    lines, ids = [], []
    for i in range(per_sensor):
        t = start_ns + i * step_ns
        for sensor_id, area in SENSORS:
            tags = {"sensor_id": sensor_id, "subdistrict": area}
            lines.append(encode_point("air_quality", tags, {"pm25": float(i), "seq": i}, t))
            ids.append(f"readings:{sensor_id}:{t}")
    await influx.write(encode_lines(lines))
    return ids


async def subscribe(
    settings: Settings,
    url: str,
    start_ns: int,
    kinds: Sequence[Kind] = ("readings",),
    flt: Filter | None = None,
    resolution: str | None = None,
) -> tuple[str, str]:
    """Stored as the API stores it; returns (subscription id, secret)."""
    secret = new_secret()
    spec = Spec("test receiver", url, tuple(kinds), flt or Filter(), resolution)
    sealed = box_from_settings(settings).seal(secret)
    async with open_registry(settings.registry_database_url) as engine:
        sub = await store.create_subscription(engine, spec, sealed, "test", start_ns)
    return sub.id, secret


async def subscription(settings: Settings, sub_id: str) -> store.Subscription:
    async with open_registry(settings.registry_database_url) as engine:
        sub = await store.get_subscription(engine, sub_id)
    assert sub is not None
    return sub


def in_order_per_sensor(events: list[dict[str, Any]]) -> bool:
    """Each sensor's events in strictly increasing time (ids dropped once seen)."""
    last: dict[str, str] = defaultdict(str)
    for e in events:
        if e["time"] <= last[e["subject"]]:
            return False
        last[e["subject"]] = e["time"]
    return True


class PusherProcess:
    """``sensornet northbound`` as its own process, so it can be killed with SIGKILL."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.state_dir / "northbound.log"

    def start(self) -> None:
        s = self.settings
        env = {
            **os.environ,
            "SENSORNET_STATE_DIR": str(s.state_dir),
            "SENSORNET_INFLUX_URL": s.influx_url,
            "SENSORNET_INFLUX_DB": s.influx_db,
            "SENSORNET_REGISTRY_URL": s.registry_database_url,
            "SENSORNET_INFLUX_TIMEOUT_S": str(s.influx_timeout_s),
        }
        for name in (
            "settle_s", "poll_s", "timeout_s", "backoff_max_s", "batch_size", "pause_after_s",
            "metrics_port", "late_notes",
        ):  # fmt: skip
            env[f"SENSORNET_NORTHBOUND_{name.upper()}"] = str(getattr(s, f"northbound_{name}"))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "northbound", "--verbose"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)
