"""The registry CLI against a real SQLite registry and a real broker: lifecycle commands,
bootstrap API keys, MQTT passwords written once with mode 600, and a broker that cannot
take a change making the command fail."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from sensornet.broker_auth import verify
from wiring.services import Mosquitto


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: Mosquitto) -> CliRunner:
    assert broker.home == tmp_path / "mosquitto"  # the state dir's broker: the CLI's target
    monkeypatch.setenv("SENSORNET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SENSORNET_MQTT_PORT", str(broker.port))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return CliRunner()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def test_lifecycle_keys_and_credentials(cli: CliRunner, tmp_path: Path) -> None:
    out = run(
        cli,
        "registry",
        "register",
        "WL-C1",
        "--type",
        "waterlogging",
        "--subdistrict",
        "beizhan",
        "--lat",
        "31.247",
        "--lon",
        "121.475",
    )
    assert json.loads(out)["status"] == "planned"
    run(cli, "registry", "status", "WL-C1", "active", code=1)
    run(cli, "registry", "status", "WL-C1", "installed")
    moved = json.loads(run(cli, "registry", "move", "WL-C1", "--lat", "31.25", "--lon", "121.48"))
    assert (moved["lat"], moved["lon"]) == (31.25, 121.48)
    updated = json.loads(run(cli, "registry", "update", "WL-C1", '{"firmware": "1.2"}'))
    assert updated["firmware"] == "1.2"

    key = json.loads(run(cli, "keys", "create", "--role", "admin", "--name", "boot"))
    assert key["key"].startswith("snk_")
    listed = json.loads(run(cli, "keys", "list"))
    assert [(k["id"], k["role"], k["revoked"]) for k in listed] == [(key["id"], "admin", False)]
    assert key["key"] not in run(cli, "keys", "list")
    refused = cli.invoke(app, ["keys", "revoke", key["id"]])  # the last admin key stays
    assert refused.exit_code == 1 and "last admin key" in refused.output, refused.output
    second = json.loads(run(cli, "keys", "create", "--role", "admin", "--name", "next"))
    run(cli, "keys", "revoke", key["id"])
    revoked = {k["id"]: k["revoked"] for k in json.loads(run(cli, "keys", "list"))}
    assert revoked == {key["id"]: True, second["id"]: False}

    creds = tmp_path / "creds.json"
    out = json.loads(run(cli, "registry", "credentials", "--missing", "-o", str(creds)))
    assert (out["issued"], out["broker_devices"]) == (1, 1)
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    password = json.loads(creds.read_text())["WL-C1"]
    line = (tmp_path / "mosquitto" / "passwd.devices").read_text().strip()
    user, encoded = line.split(":", 1)
    assert user == "WL-C1" and verify(password, encoded)

    (tmp_path / "mosquitto" / "passwd.devices").unlink()
    assert json.loads(run(cli, "registry", "sync-broker")) == {"broker_devices": 1}
    assert (tmp_path / "mosquitto" / "passwd.devices").read_text().strip() == line

    run(cli, "registry", "retire", "WL-C1")
    assert (tmp_path / "mosquitto" / "passwd.devices").read_text() == ""  # left the broker
    assert json.loads(run(cli, "registry", "get", "WL-C1"))["status"] == "retired"


def test_a_broker_that_cannot_take_the_change_fails_the_command(
    cli: CliRunner, tmp_path: Path, broker: Mosquitto
) -> None:
    args = ["--type", "noise", "--subdistrict", "beizhan", "--lat", "31.247", "--lon", "121.475"]
    run(cli, "registry", "register", "NS-C2", *args, "--status", "active")
    broker.stop()
    result = cli.invoke(app, ["registry", "credentials", "NS-C2"])
    assert result.exit_code == 1
    assert "broker" in result.output and "start it" in result.output
    assert json.loads(run(cli, "registry", "get", "NS-C2"))["has_credentials"] is False
    assert cli.invoke(app, ["registry", "sync-broker"]).exit_code == 1

    broker.start()
    out = json.loads(run(cli, "registry", "credentials", "NS-C2"))
    assert out["broker_devices"] == 1 and len(out["issued"]["NS-C2"]) >= 32
