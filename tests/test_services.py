"""`sensornet services up|status|down` start and stop the real servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.common import add_json_flag
from cli.main import app
from sensornet.errors import ServiceError
from wiring import services
from wiring.services import free_port


def test_services_up_status_down(tmp_path: Path) -> None:
    env = {
        "SENSORNET_STATE_DIR": str(tmp_path / "state"),
        "SENSORNET_MQTT_PORT": str(free_port()),
        "SENSORNET_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
        "SENSORNET_INFLUX_RPC_PORT": str(free_port()),
        "SENSORNET_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "SENSORNET_PROMETHEUS_PORT": str(free_port()),
    }
    runner = CliRunner()
    try:
        up = runner.invoke(app, ["services", "up"], env=env)
        assert up.exit_code == 0, up.output
        assert "4/4" in up.stderr  # the progress bar (on stderr): four services waited for
        status = json.loads(runner.invoke(app, ["services", "status"], env=env).stdout)
        assert status["mosquitto"]["ready"] and status["influxd"]["ready"]
        assert status["alertmanager"]["ready"] and status["prometheus"]["ready"]
        assert (tmp_path / "state/mosquitto/mosquitto.log").exists()
        again = runner.invoke(add_json_flag(app), ["services", "up", "--json"], env=env)
        assert again.exit_code == 0, again.output  # idempotent
        assert json.loads(again.stdout)["influxd"]["port"] == status["influxd"]["port"]
    finally:
        down = runner.invoke(add_json_flag(app), ["services", "down", "--json"], env=env)
    assert down.exit_code == 0
    assert "mosquitto" in json.loads(down.stdout)["stopped"]
    status = json.loads(runner.invoke(app, ["services", "status"], env=env).stdout)
    assert status["mosquitto"]["pid"] is None and status["influxd"]["pid"] is None
    assert status["alertmanager"]["pid"] is None and status["prometheus"]["pid"] is None


def test_port_taken_by_a_stranger_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        broker = services.Mosquitto(name="mosquitto", home=tmp_path, port=s.getsockname()[1])
        with pytest.raises(ServiceError, match="taken by another process"):
            broker.start()


def test_missing_binaries_name_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "find_binary", lambda name: None)
    with pytest.raises(ServiceError, match="apt-get install -y influxdb mosquitto"):
        services.ensure_binaries(install=False)
