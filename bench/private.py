"""What every benchmark starts from: settings for services of its own on free ports
under a temporary folder, and that InfluxDB. A bench never touches the platform's own
services or settings (``_env_file=None``: no ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sensornet.settings import Settings
from wiring.services import InfluxDB, free_port


def bench_settings(root: Path, **overrides: Any) -> Settings:
    """Free ports for the broker, InfluxDB (HTTP and RPC) and the ingester's metrics;
    database ``bench``; a fixed ingester id. ``overrides`` win."""
    values: dict[str, Any] = {
        "state_dir": root,
        "mqtt_port": free_port(),
        "influx_url": f"http://127.0.0.1:{free_port()}",
        "influx_rpc_port": free_port(),
        "influx_db": "bench",
        "ingest_client_id": "bench-ingester",
        "ingest_metrics_port": free_port(),
        **overrides,
    }
    return Settings(**values, _env_file=None)


def private_influxd(root: Path, settings: Settings) -> InfluxDB:
    """The bench's own InfluxDB on ``settings``' ports (not started)."""
    return InfluxDB(
        name="influxd",
        home=root / "influxdb",
        port=settings.influx_port,
        rpc_port=settings.influx_rpc_port,
    )
