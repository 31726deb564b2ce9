"""The query API as its own process (uvicorn, as the shipped systemd unit runs it), for tests
that measure it (peak RSS) or need several workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import TracebackType

import httpx

from sensornet.settings import Settings


def api_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a ``sensornet-api`` unit would have for ``settings``."""
    s = settings
    return {
        **os.environ,
        "SENSORNET_STATE_DIR": str(s.state_dir),
        "SENSORNET_MQTT_PORT": str(s.mqtt_port),
        "SENSORNET_INFLUX_URL": s.influx_url,
        "SENSORNET_INFLUX_DB": s.influx_db,
        "SENSORNET_REGISTRY_URL": s.registry_database_url,
        "SENSORNET_OPENDATA_RATE_PER_S": str(s.opendata_rate_per_s),
        "SENSORNET_OPENDATA_BURST": str(s.opendata_burst),
        **extra,
    }


class ApiProcess:
    """``uvicorn --factory api.app:create_app`` with ``workers`` processes on
    ``settings.api_port``; a context manager that waits until it answers and stops it."""

    def __init__(self, settings: Settings, workers: int = 1, **env: str) -> None:
        self.settings, self.workers, self.env = settings, workers, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.state_dir / f"api-{settings.api_port}.log"

    @property
    def base(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def __enter__(self) -> ApiProcess:
        s = self.settings
        args = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
        args += ["--host", s.api_host, "--port", str(s.api_port), "--no-proxy-headers"]
        args += ["--log-level", "warning"]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=api_env(s, **self.env), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"API exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise AssertionError("API not answering within 30 s")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pids(self) -> list[int]:
        """The serving processes: the process itself, or its workers."""
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        children = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with open(children) as f:
            return [int(p) for p in f.read().split()]

    def peak_rss(self) -> int:
        """The largest peak resident set (``VmHWM``) of the serving processes, in bytes."""
        peaks = []
        for pid in self.pids():
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) * 1024)
        return max(peaks)
