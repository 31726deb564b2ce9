"""deploy/: no container engine runs here, so the compose file is checked for syntax and
for the structure the platform needs (services, commands that exist, provisioning paths)."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app

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
    assert len(units) == 4
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert {"Unit", "Service"} <= set(parser.sections()), unit.name
        assert parser["Service"]["ExecStart"].startswith("/opt/sensornet/venv/bin/")
