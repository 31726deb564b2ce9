"""The query API as its own process (``sensornet api``, or uvicorn as the shipped systemd
unit runs it), for tests that measure it (peak RSS) or need its several workers."""

from __future__ import annotations

import configparser
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
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


DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def unit_command(port: int) -> tuple[list[str], dict[str, str]]:
    """The shipped ``sensornet-api.service``'s command line and ``Environment=``, on
    ``port`` and with this interpreter's uvicorn."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "systemd" / "sensornet-api.service").read_text())
    args = shlex.split(unit["Service"]["ExecStart"])
    assert args[0].endswith("/uvicorn"), args
    args = [sys.executable, "-m", "uvicorn", *args[1:]]
    args[args.index("--port") + 1] = str(port)
    env = dict(
        shlex.split(v)[0].split("=", 1) for k, v in unit["Service"].items() if k == "environment"
    )
    return args, env


class ApiProcess:
    """The API as its own process on ``settings.api_port``: ``how="cli"`` runs
    ``sensornet api`` (one process), ``how="unit"`` the shipped systemd unit's uvicorn
    command (two workers). A context manager that waits until it answers, then stops it;
    ``env`` is added to (and overrides) the unit's environment."""

    def __init__(self, settings: Settings, how: str = "cli", **env: str) -> None:
        self.settings, self.how, self.env = settings, how, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.state_dir / f"api-{settings.api_port}.log"
        self.workers = 1

    @property
    def base(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def __enter__(self) -> ApiProcess:
        s = self.settings
        if self.how == "unit":
            args, env = unit_command(s.api_port)
            if "--workers" in args:
                self.workers = int(args[args.index("--workers") + 1])
        else:
            args = [sys.executable, "-m", "cli.main", "api", "--port", str(s.api_port)]
            env = {}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=api_env(s, **(env | self.env)), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90  # a loaded shared machine starts slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"API exited: {self.log.read_text()[-2000:]}")
            try:
                ready = httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready and len(self.pids()) == self.workers:
                return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise AssertionError("API not answering within 90 s")

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
            pids = [int(p) for p in f.read().split()]
        workers = []
        for pid in pids:  # not multiprocessing's resource tracker
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
        return workers

    def holder(self, client_port: int) -> int | None:
        """The worker whose socket is the server end of the client's connection from
        ``client_port`` on loopback (``/proc/<pid>/fd`` and ``/proc/net/tcp``)."""
        inodes = {}
        for pid in self.pids():
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            remote_port = int(parts[2].split(":")[1], 16)
            if remote_port == client_port and parts[9] in inodes:
                return inodes[parts[9]]
        return None

    def peak_rss(self) -> int:
        """The largest peak resident set (``VmHWM``) of the serving processes, in bytes."""
        peaks = []
        for pid in self.pids():
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) * 1024)
        return max(peaks)
