"""Alertmanager and Prometheus as local processes, like Mosquitto and InfluxDB
(``wiring.services``): used by ``sensornet services``, the demo and the test fixtures.

Alertmanager's configuration is generated from the routing file (``alarms.routing``) at
every start and checked with ``amtool check-config`` before the process is started, so a
bad routing file is a clear error, not an Alertmanager that exits. Secrets it must read
itself (SMTP password, webhook tokens) are written as 0600 files beside it and referenced
by ``*_file`` fields: the generated configuration holds none. The WeCom/DingTalk robots'
secrets stay with the relay (``alarms.relay``)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from alarms.routing import Delivery, Routing, alertmanager_config, load_routing
from sensornet.errors import ConfigError, ServiceError
from sensornet.settings import Settings
from wiring.services import DEBIAN_PACKAGES, LocalService, find_binary

#: what Alertmanager reads itself; robots' secrets stay with the relay
_FILE_SECRETS = ("smtp.password",)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:  # noqa: S310 - our own http URL
            return int(r.status) == 200
    except OSError:
        return False


def check_tool(tool: str, *args: str) -> str:
    """Run ``amtool``/``promtool`` on a generated file: its output, or a ConfigError."""
    binary = find_binary(tool)
    if binary is None:
        raise ServiceError(f"{tool} not found: apt-get install {DEBIAN_PACKAGES[tool]}")
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise ConfigError(f"{tool} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@dataclass
class Alertmanager(LocalService):
    """Alertmanager 0.25 with its configuration generated from ``routing``."""

    routing: Routing | None = None
    delivery: Delivery | None = None
    #: secret name -> value, written to 0600 files that the configuration names
    secrets: dict[str, str] = field(default_factory=dict)
    cluster_port: int = 0
    #: run amtool check-config on what is written (off where amtool is absent: containers)
    check: bool = True
    #: owner (uid) of the secret files, for an Alertmanager running as another user
    secrets_owner: int | None = None

    @property
    def config_file(self) -> Path:
        return self.home / "alertmanager.yml"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        cluster = f"{self.host}:{self.cluster_port}" if self.cluster_port else ""
        return [
            find_binary("prometheus-alertmanager") or "prometheus-alertmanager",
            f"--config.file={self.config_file}",
            f"--storage.path={self.home / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--cluster.listen-address={cluster}",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/-/ready")

    def write_secret_files(self) -> dict[str, str]:
        folder = self.home / "secrets"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        paths: dict[str, str] = {}
        for name, value in sorted(self.secrets.items()):
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
            os.chmod(path, 0o600)
            if self.secrets_owner is not None:
                os.chown(path, self.secrets_owner, -1)
                os.chown(folder, self.secrets_owner, -1)
            paths[name] = str(path)
        return paths

    def configure(self) -> None:
        if self.routing is None or self.delivery is None:
            raise ConfigError("Alertmanager needs a routing and a delivery")
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        delivery = dataclasses.replace(self.delivery, secret_files=self.write_secret_files())
        config = alertmanager_config(self.routing, delivery)
        text = "# written by wiring.alerting from the routing file; docs/alerting.md\n"
        self.config_file.write_text(text + yaml.safe_dump(config, sort_keys=False))
        if self.check:
            check_tool("amtool", "check-config", str(self.config_file))


def alertmanager_service(
    settings: Settings, *, home: Path | None = None, port: int | None = None
) -> Alertmanager:
    """The Alertmanager these settings describe (its secrets from the settings)."""
    routing = load_routing(settings.alert_routing_file)
    secrets = {
        n: settings.alert_secret(n) for n in _FILE_SECRETS if n in settings.alert_secret_names()
    }
    for r in routing.receivers.values():
        if r.kind == "webhook" and f"{r.name}.token" in settings.alert_secret_names():
            secrets[f"{r.name}.token"] = settings.alert_secret(f"{r.name}.token")
    return Alertmanager(
        name="alertmanager",
        home=home or settings.state_dir.resolve() / "alertmanager",
        host="127.0.0.1",
        port=port or settings.alertmanager_port,
        routing=routing,
        delivery=Delivery(
            relay_url=settings.alert_relay_url
            or f"http://{settings.alert_relay_host}:{settings.alert_relay_port}",
            smtp_smarthost=settings.alert_smtp_smarthost,
            smtp_from=settings.alert_smtp_from,
            smtp_user=settings.alert_smtp_user,
            smtp_require_tls=settings.alert_smtp_require_tls,
        ),
        secrets=secrets,
        cluster_port=settings.alertmanager_cluster_port,
    )


def shipped_alert_rules() -> str:
    """The platform-health alert rules (Prometheus rule file) the project ships."""
    return (resources.files("wiring") / "prometheus_alerts.yml").read_text(encoding="utf-8")


@dataclass
class Prometheus(LocalService):
    """Prometheus 2.42 scraping the platform's processes, with the shipped alert rules,
    sending alerts to the project's Alertmanager."""

    #: job name -> host:port targets whose /metrics it scrapes
    targets: dict[str, list[str]] = field(default_factory=dict)
    alertmanagers: list[str] = field(default_factory=list)
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    rules: str = ""  # rule file text; default: the shipped rules
    check: bool = True  # promtool on what is written (off where it is absent: containers)

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [
            find_binary("prometheus") or "prometheus",
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/-/ready")

    def configure(self) -> None:
        rules = self.home / "alerts.yml"
        rules.write_text(self.rules or shipped_alert_rules())
        if self.check:
            check_tool("promtool", "check", "rules", str(rules))
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in sorted(self.targets.items())
            ],
        }
        text = "# written by wiring.alerting; docs/alerting.md\n"
        self.config_file.write_text(text + yaml.safe_dump(config, sort_keys=False))
        if self.check:
            check_tool("promtool", "check", "config", str(self.config_file))


def scrape_targets(settings: Settings, alertmanager_port: int) -> dict[str, list[str]]:
    """Every long-running process's /metrics, as these settings place them."""
    targets = {
        "sensornet-api": [f"{settings.api_host}:{settings.api_port}"],
        "alertmanager": [f"127.0.0.1:{alertmanager_port}"],
    }
    if settings.ingest_metrics_port:
        targets["sensornet-ingest"] = [f"127.0.0.1:{settings.ingest_metrics_port}"]
    if settings.alarm_metrics_port:
        targets["sensornet-alarms"] = [f"127.0.0.1:{settings.alarm_metrics_port}"]
    if settings.northbound_metrics_port:
        targets["sensornet-northbound"] = [f"127.0.0.1:{settings.northbound_metrics_port}"]
    return targets


def prometheus_service(settings: Settings) -> Prometheus:
    return Prometheus(
        name="prometheus",
        home=settings.state_dir.resolve() / "prometheus",
        port=settings.prometheus_port,
        targets=scrape_targets(settings, settings.alertmanager_port),
        alertmanagers=[f"127.0.0.1:{settings.alertmanager_port}"],
    )


def alerting_services(settings: Settings) -> tuple[Alertmanager, Prometheus]:
    """Started after ``platform_services`` by the demo and ``sensornet services up``."""
    return alertmanager_service(settings), prometheus_service(settings)


def write_alerting_files(
    settings: Settings,
    out: Path,
    *,
    targets: dict[str, list[str]],
    alertmanager: str,
    secrets_owner: int | None = None,
) -> tuple[Path, Path]:
    """Alertmanager's and Prometheus's configuration under ``out`` for deployments that run
    them elsewhere (containers, systemd units): ``out/alertmanager`` and ``out/prometheus``,
    read at the same path by the services. Checked with amtool/promtool when present."""
    check = find_binary("amtool") is not None and find_binary("promtool") is not None
    am = alertmanager_service(settings, home=out / "alertmanager")
    am.check, am.secrets_owner = check, secrets_owner
    am.home.mkdir(parents=True, exist_ok=True)
    am.configure()
    prometheus = Prometheus(
        name="prometheus", home=out / "prometheus", targets=targets,
        alertmanagers=[alertmanager], check=check,
    )  # fmt: skip
    prometheus.home.mkdir(parents=True, exist_ok=True)
    prometheus.configure()
    return am.config_file, prometheus.config_file
