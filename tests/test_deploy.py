"""deploy/: no container engine runs here, so the compose file is checked for syntax and
for the structure the platform needs (services, commands that exist, provisioning paths)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from sensornet.cli import app

DEPLOY = Path(__file__).parent.parent / "deploy"


def _compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_every_part() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert {"mosquitto", "influxdb", "grafana", "ingester", "api", "simulator", "alarms",
            "storage-layout", "grafana-files"} <= set(services)  # fmt: skip
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown {dep}"


def test_compose_commands_are_real_cli_commands() -> None:
    runner = CliRunner()
    for name, service in _compose()["services"].items():  # type: ignore[attr-defined]
        if service.get("image") != "sensornet:local":
            continue
        words = [w for w in service["command"] if not w.startswith("-") and "/" not in w]
        path = [w for w in words if w.isidentifier()][:2]
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{name}: sensornet {' '.join(path)}: {result.output}"


def test_grafana_reads_what_dashboards_build_writes() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    build = services["grafana-files"]["command"]
    grafana = services["grafana"]
    dash_path = build[build.index("--dashboards-path") + 1]
    mount = next(v for v in grafana["volumes"] if v.startswith("grafana-files:"))
    root = mount.split(":")[1]
    assert dash_path == f"{root}/dashboards"
    assert grafana["environment"]["GF_PATHS_PROVISIONING"] == f"{root}/provisioning"


def test_systemd_units_parse() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) == 5
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert {"Unit", "Service"} <= set(parser.sections()), unit.name
        if unit.name != "sensornet-broker-reload.service":
            assert parser["Service"]["ExecStart"].startswith("/opt/sensornet/venv/bin/")


def _sensornet_services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return {n: s for n, s in services.items() if s.get("image") == "sensornet:local"}


def _mosquitto_conf() -> dict[str, str]:
    lines = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))


def test_compose_broker_reads_the_store_the_platform_writes() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    broker = services["mosquitto"]
    conf = _mosquitto_conf()
    store = str(Path(conf["password_file"]).parent)
    assert str(Path(conf["acl_file"]).parent) == store
    volume = next(v.split(":")[0] for v in broker["volumes"] if v.split(":")[1] == store)
    assert broker["command"] == ["sh", "/mosquitto/config/run.sh"]  # reloads on change
    assert "./mosquitto/run.sh:/mosquitto/config/run.sh:ro" in broker["volumes"]
    assert broker["depends_on"]["broker-auth"] == {"condition": "service_completed_successfully"}
    for name, service in _sensornet_services().items():
        env = service["environment"]
        if name == "grafana-files":  # builds dashboard files only, in a volume of its own
            continue
        assert env["SENSORNET_BROKER_AUTH_DIR"] == store, name
        assert env["SENSORNET_BROKER_RELOAD"] == "watch", name
        assert f"{volume}:{store}" in service["volumes"], name
        assert env["SENSORNET_ENVIRONMENT"] == "production", name
    assert services["broker-auth"]["command"] == ["broker", "setup"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"chown sensornet:1883 {store} && chmod 2770 {store}" in dockerfile


def test_no_default_secrets_and_no_fleet_identity_unless_the_simulator_runs() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    defaults = re.findall(r"\$\{(\w*(?:PASSWORD|SECRET|TOKEN)\w*):-([^}]*)\}", text)
    assert all(value == "" for _, value in defaults), defaults
    for name, service in _sensornet_services().items():
        fleet = service["environment"].get("SENSORNET_MQTT_FLEET_PASSWORD")
        if name == "simulator":
            assert service["profiles"] == ["simulator"]  # off unless asked for
            assert fleet == "${MQTT_FLEET_PASSWORD:-}"
        else:
            assert fleet is None, name
    assert "simulator" not in " ".join(_mosquitto_conf().values())
    assert not (DEPLOY / "mosquitto" / "acl").exists()  # the ACL is generated, fleet-free
    env = (DEPLOY / "sensornet.env.example").read_text()
    assert "SENSORNET_MQTT_FLEET_PASSWORD=" not in env
    assert "SENSORNET_ENVIRONMENT=production" in env
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if "PASSWORD=" in line:
            assert line.endswith("="), line  # no example secret to leave in place


def test_systemd_api_writes_where_the_broker_reads_and_a_path_unit_reloads_it() -> None:
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "sensornet.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    store = env["SENSORNET_BROKER_AUTH_DIR"]
    assert env["SENSORNET_BROKER_RELOAD"] == "watch"
    api = _unit("sensornet-api.service")
    assert store in api["Service"]["ReadWritePaths"].split()
    path = _unit("sensornet-broker-reload.path")
    assert path["Path"]["PathChanged"] == f"{store}/passwd"
    reload = _unit(path["Path"]["Unit"])
    assert reload["Service"]["ExecStart"] == "/bin/systemctl reload mosquitto.service"
    readme = (DEPLOY / "README.md").read_text()
    assert f"password_file {store}/passwd" in readme and f"acl_file {store}/acl" in readme
    assert f"install -d -m 2770 -o sensornet -g mosquitto {store}" in readme


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser
