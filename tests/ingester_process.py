"""``sensornet ingest`` as its own process, for tests that kill it or measure it."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable

from sensornet.settings import Settings


class IngesterProcess:
    """``sensornet ingest`` as its own process, so it can be killed like in production.

    ``data_limit_bytes`` caps the process's heap (``RLIMIT_DATA``): a test that provokes
    runaway memory then ends in the ingester's ``MemoryError`` instead of taking a shared
    machine's memory with it."""

    def __init__(
        self,
        settings: Settings,
        client_id: str | None = None,
        data_limit_bytes: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id or settings.ingest_client_id
        self.data_limit_bytes = data_limit_bytes
        self.extra_env = extra_env or {}  # e.g. the scaled shape's input and nodes
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.state_dir / f"{self.client_id}.log"

    def env(self) -> dict[str, str]:
        """The environment ``sensornet ingest`` runs with: this test's services."""
        s = self.settings
        return {
            **os.environ,
            "SENSORNET_STATE_DIR": str(s.state_dir),
            "SENSORNET_MQTT_PORT": str(s.mqtt_port),
            "SENSORNET_MQTT_INGEST_PASSWORD": s.mqtt_ingest_password.get_secret_value(),
            "SENSORNET_INFLUX_URL": s.influx_url,
            "SENSORNET_INFLUX_DB": s.influx_db,
            "SENSORNET_INFLUX_TIMEOUT_S": str(s.influx_timeout_s),
            "SENSORNET_INGEST_CLIENT_ID": self.client_id,
            "SENSORNET_INGEST_BATCH_SIZE": str(s.ingest_batch_size),
            "SENSORNET_INGEST_RECEIVE_MAXIMUM": str(s.ingest_receive_maximum),
            "SENSORNET_INGEST_SHARE_GROUP": s.ingest_share_group,
            "SENSORNET_INGEST_METRICS_PORT": str(s.ingest_metrics_port),
            "SENSORNET_REGISTRY_URL": s.registry_database_url,
            **self.extra_env,
        }

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "ingest", "--verbose"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limits(),
            )

    def _limits(self) -> Callable[[], None] | None:
        limit = self.data_limit_bytes
        if limit is None:
            return None
        return lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` figure in bytes, e.g. ``VmHWM`` (peak resident set)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name == key:
                    return int(value.split()[0]) * 1024  # reported in kB
        raise KeyError(key)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)
