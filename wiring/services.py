"""Real Mosquitto and InfluxDB as local processes under a state directory.

Used by ``sensornet services``, the demo, the benchmarks and the test fixtures alike, so
what the tests run is what users run. Processes are detached (own session) and tracked
by pid files, so ``services up`` returns and ``services down`` finds them again.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sensornet.broker_auth import broker_home, fleet_acl, install_static
from sensornet.broker_files import ACL, CANARY_USER, PASSWD, assemble
from sensornet.errors import ServiceError
from sensornet.reserved import acl_denies, service_names
from sensornet.settings import Settings
from wiring.mosquitto_plugin import subscribe_acl_plugin

DEBIAN_PACKAGES = {
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "influxd": "influxdb",
    # notifications and platform health (wiring/alerting.py)
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus": "prometheus",
    "promtool": "prometheus",
}


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d, name)).exists()), None
    )


def ensure_binaries(install: bool = True) -> None:
    """Install the Debian packages that provide missing binaries, or say what to run."""
    missing = sorted({pkg for b, pkg in DEBIAN_PACKAGES.items() if find_binary(b) is None})
    if not missing:
        return
    command = f"apt-get update && apt-get install -y {' '.join(missing)}"
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(f"missing {', '.join(missing)}; install them with: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _alive(pid: int) -> bool:
    """True while the process runs; reaps it if it is our exited child (no zombies)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class LocalService:
    """One detached server process with a pid file, a log file and a readiness probe."""

    name: str
    home: Path
    host: str = "127.0.0.1"
    port: int = 0
    start_timeout_s: float = 30.0

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def configure(self) -> None:
        """Write config files; called before every start."""

    def env(self) -> dict[str, str] | None:
        """The process's environment; ``None``: ours."""
        return None

    def ready(self) -> bool:
        return _port_open(self.host, self.port)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.running():
            self.wait_ready()
            return
        if _port_open(self.host, self.port):
            raise ServiceError(
                f"{self.name}: port {self.host}:{self.port} is taken by another process; "
                f"choose another port (see docs/settings.md)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.configure()
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.home,
                env=self.env(),
            )
        self.pid_file.write_text(str(proc.pid))
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.ready():
                return
            if not self.running():
                tail = (
                    self.log_file.read_text(errors="replace")[-2000:]
                    if self.log_file.exists()
                    else ""
                )
                raise ServiceError(f"{self.name} exited during start; log {self.log_file}:\n{tail}")
            time.sleep(0.05)
        raise ServiceError(
            f"{self.name} not ready on {self.host}:{self.port} after "
            f"{self.start_timeout_s:.0f}s; see {self.log_file}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self.running():
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """``kill -9``: for fault tests."""
        self.stop(signal.SIGKILL)


@dataclass
class Mosquitto(LocalService):
    """Broker with persistence, no anonymous access and queues sized for outages."""

    users: dict[str, str] = field(default_factory=dict)
    acl: str = ""
    max_queued_messages: int = 2_000_000
    autosave_interval_s: int = 5
    #: also listen for MQTT over TLS on ``tls_port`` with this certificate chain and key (PEM)
    tls: tuple[Path, Path] | None = None
    tls_port: int = 0
    #: with ``tls``: require a client certificate signed by this CA (PEM)
    tls_client_ca: Path | None = None
    #: refuse (in the SUBACK) subscriptions no read grant of the ACL covers
    #: (wiring.mosquitto_plugin); off only to measure or show the broker without it
    refuse_foreign_subscriptions: bool = True

    @property
    def config_file(self) -> Path:
        return self.home / "mosquitto.conf"

    def ready(self) -> bool:
        return _port_open(self.host, self.port) and (
            self.tls is None or _port_open(self.host, self.tls_port)
        )

    def tls_listener(self) -> str:
        """The TLS listener's lines (deploy/mosquitto/mosquitto.conf has the same)."""
        if self.tls is None:
            return ""
        lines = [
            "# MQTT over TLS; the client's password and ACL apply as on the plain listener",
            f"listener {self.tls_port} {self.host}",
            f"certfile {self.tls[0]}",
            f"keyfile {self.tls[1]}",
            "tls_version tlsv1.2",
        ]
        if self.tls_client_ca is not None:
            lines += ["require_certificate true", f"cafile {self.tls_client_ca}"]
        return "\n".join(lines) + "\n"

    def argv(self) -> list[str]:
        return [find_binary("mosquitto") or "mosquitto", "-c", str(self.config_file)]

    def subscribe_plugin(self) -> str:
        """The lines loading the subscription plugin (deploy/mosquitto/mosquitto.conf too)."""
        if not self.refuse_foreign_subscriptions:
            return ""
        return (
            "# refused SUBACKs for filters outside the client's read grants (docs/security.md)\n"
            f"plugin {subscribe_acl_plugin()}\n"
            f"plugin_opt_acl_file {self.home / ACL}\n"
        )

    def configure(self) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        # service users and the ACL here; the registry's devices come from sync_broker
        # (sensornet.broker_files: the credential store in this directory)
        install_static(self.home, self.users, self.acl)
        assemble(self.home)
        self.config_file.write_text(
            f"""# written by wiring.services; see docs/decisions.md ("Broker") for the reasons
per_listener_settings false
# stay the user who started us: the state directory is ours, not the mosquitto user's
user {getpass.getuser()}
listener {self.port} {self.host}
allow_anonymous false
password_file {self.home / PASSWD}
acl_file {self.home / ACL}
{self.subscribe_plugin()}persistence true
persistence_location {data}/
autosave_interval {self.autosave_interval_s}
persistent_client_expiration 14d
max_queued_messages {self.max_queued_messages}
max_queued_bytes 0
max_inflight_messages 0
max_packet_size 1048576
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages true
{self.tls_listener()}"""
        )


@dataclass
class InfluxDB(LocalService):
    """InfluxDB 1.x with its data, WAL and meta under ``home``."""

    rpc_port: int = 0
    auth_enabled: bool = False
    #: serve https with this certificate chain and key (PEM) instead of http
    tls: tuple[Path, Path] | None = None

    @property
    def config_file(self) -> Path:
        return self.home / "influxdb.conf"

    def argv(self) -> list[str]:
        return [find_binary("influxd") or "influxd", "run", "-config", str(self.config_file)]

    def ready(self) -> bool:
        scheme = "https" if self.tls else "http"
        # a liveness probe of our own child: its certificate is the caller's to verify
        context = ssl._create_unverified_context() if self.tls else None  # noqa: S323
        try:
            with urllib.request.urlopen(  # noqa: S310 - scheme is http(s), set above
                f"{scheme}://{self.host}:{self.port}/ping", timeout=0.5, context=context
            ) as r:
                return int(r.status) == 204
        except OSError:
            return False

    def configure(self) -> None:
        https = (
            f'  https-enabled = true\n  https-certificate = "{self.tls[0]}"\n'
            f'  https-private-key = "{self.tls[1]}"\n'
            if self.tls
            else ""
        )
        self.config_file.write_text(
            f"""# written by wiring.services
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{self.home / "meta"}"
  logging-enabled = false
[data]
  dir = "{self.home / "data"}"
  wal-dir = "{self.home / "wal"}"
  index-version = "tsi1"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {str(self.auth_enabled).lower()}
  log-enabled = false
  max-body-size = 0
{https}[logging]
  level = "warn"
  suppress-logo = true
[continuous_queries]
  log-enabled = false
"""
        )


def broker_acl(prefix: str, ingest_user: str, fleet_user: str | None = None) -> str:
    """Devices write only below their own id (``%u``); the ingester only reads. The fleet
    identity (test-only: the simulator's shared login, which may write as any device) gets
    its line only when asked for. Service identities (the ingester, the fleet identity, the
    delivery canary) are denied the device topics of every reserved name, their own
    included: the ``%u`` patterns apply to every user, so without the denials the
    ingester could publish as a device called ``ingester`` (sensornet.reserved)."""
    fleet = fleet_acl(prefix, fleet_user, ingest_user) + "\n" if fleet_user else ""
    denies = acl_denies(prefix, service_names(ingest_user, fleet_user))
    return f"""# written by wiring.services (broker_acl)
user {ingest_user}
{denies}topic read {prefix}/+/readings
topic read {prefix}/+/pack
topic read {prefix}/+/status

user {CANARY_USER}
{denies}
{fleet}pattern write {prefix}/%u/readings
pattern write {prefix}/%u/pack
pattern write {prefix}/%u/status
"""


def platform_services(settings: Settings) -> tuple[Mosquitto, InfluxDB]:
    """The broker and InfluxDB this settings object describes, under its state dir."""
    broker = Mosquitto(
        name="mosquitto",
        home=broker_home(settings),
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        # no fleet identity: a simulator that needs it adds it while it runs (fleet_identity)
        users={settings.mqtt_ingest_user: settings.mqtt_ingest_password.get_secret_value()},
        acl=broker_acl(settings.topic_prefix, settings.mqtt_ingest_user),
        max_queued_messages=settings.mqtt_max_queued_messages,
    )
    influx = InfluxDB(
        name="influxd",
        home=settings.state_dir.resolve() / "influxdb",
        host="127.0.0.1",
        port=settings.influx_port,
        rpc_port=settings.influx_rpc_port,
    )
    return broker, influx
