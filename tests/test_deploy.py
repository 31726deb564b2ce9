"""deploy/: no container engine runs here, so the compose file is checked for syntax and
for the structure the platform needs (services, commands that exist, provisioning paths,
who gets which InfluxDB user, the broker's TLS listener, no default secrets); the shipped
TLS listener lines run on a real Mosquitto."""

from __future__ import annotations

import asyncio
import configparser
import getpass
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from typer.testing import CliRunner

from cli.main import app
from sensornet.bulk_publisher import BulkPublisher
from sensornet.mqtt_tls import MqttTls
from sensornet.settings import Settings
from wiring.services import ensure_binaries, find_binary, free_port

DEPLOY = Path(__file__).parent.parent / "deploy"


def _compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_every_part() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert {"mosquitto", "influxdb", "grafana", "ingester", "api", "simulator", "alarms",
            "storage-layout", "grafana-files", "alertmanager", "prometheus",
            "alerting-files", "northbound"} <= set(services)  # fmt: skip
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
    assert len(units) == 8
    debian = {  # the Debian packages' servers, configured by `sensornet alarms write-config`
        "sensornet-alertmanager.service": "/usr/bin/prometheus-alertmanager ",
        "sensornet-prometheus.service": "/usr/bin/prometheus ",
    }
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert {"Unit", "Service"} <= set(parser.sections()), unit.name
        if unit.name in debian:
            assert parser["Service"]["ExecStart"].startswith(debian[unit.name])
        elif unit.name != "sensornet-broker-reload.service":
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
        if name in ("grafana-files", "alerting-files"):  # write files to a volume of their own
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
    drop_in = (DEPLOY / "mosquitto" / "sensornet-debian.conf").read_text()  # the guide's
    assert f"password_file {store}/passwd" in drop_in and f"acl_file {store}/acl" in drop_in
    assert f"install -d -m 2770 -o sensornet -g mosquitto {store}" in readme


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _secret_variable(value: str) -> str:
    """``${NAME:?…}``: a required variable from deploy/.env, never a default."""
    found = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", value)
    assert found, f"{value!r} is not a required ${{VARIABLE:?…}}"
    return found.group(1)


def test_influxdb_has_auth_on_and_no_host_port() -> None:
    influxdb = _services()["influxdb"]
    assert "ports" not in influxdb, "InfluxDB must stay on the compose network"
    env = influxdb["environment"]
    assert env["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    for user in ("ADMIN_USER", "WRITE_USER", "USER", "READ_USER"):
        assert env[f"INFLUXDB_{user}"], user
    for password in ("ADMIN_PASSWORD", "WRITE_USER_PASSWORD", "USER_PASSWORD",
                     "READ_USER_PASSWORD"):  # fmt: skip
        _secret_variable(env[f"INFLUXDB_{password}"])


def test_each_service_reaches_influxdb_as_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services()
    influx = services["influxdb"]["environment"]
    created = {  # user -> the deploy/.env variable of its password
        influx["INFLUXDB_ADMIN_USER"]: _secret_variable(influx["INFLUXDB_ADMIN_PASSWORD"]),
        influx["INFLUXDB_WRITE_USER"]: _secret_variable(influx["INFLUXDB_WRITE_USER_PASSWORD"]),
        influx["INFLUXDB_USER"]: _secret_variable(influx["INFLUXDB_USER_PASSWORD"]),
        influx["INFLUXDB_READ_USER"]: _secret_variable(influx["INFLUXDB_READ_USER_PASSWORD"]),
    }
    wanted = {  # service -> (user, uses it read-only)
        "storage-layout": (influx["INFLUXDB_ADMIN_USER"], False),
        "ingester": (influx["INFLUXDB_WRITE_USER"], False),
        "alarms": (influx["INFLUXDB_USER"], False),
        "api": (influx["INFLUXDB_READ_USER"], True),
    }
    for name, (user, read_only) in wanted.items():
        env = services[name]["environment"]
        given = {k: v for k, v in env.items() if k.startswith("SENSORNET_INFLUX")
                 and ("USER" in k or "PASSWORD" in k)}  # fmt: skip
        prefix = "SENSORNET_INFLUX_READ" if read_only else "SENSORNET_INFLUX"
        assert given == {f"{prefix}_USER": user, f"{prefix}_PASSWORD": given[f"{prefix}_PASSWORD"]}
        assert _secret_variable(given[f"{prefix}_PASSWORD"]) == created[user], name
        # and the settings object, from that environment, uses that user where it should
        for key in [k for k in os.environ if k.startswith("SENSORNET_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert (settings.influx_reader if read_only else (settings.influx_user, None))[0] == user
    simulator = services["simulator"]["environment"]
    assert not [k for k in simulator if "INFLUX_USER" in k or "INFLUX_PASSWORD" in k]
    grafana_files = services["grafana-files"]["environment"]
    assert grafana_files["SENSORNET_INFLUX_READ_USER"] == influx["INFLUXDB_READ_USER"]
    grafana_password = services["grafana"]["environment"]["SENSORNET_GRAFANA_INFLUX_PASSWORD"]
    assert _secret_variable(grafana_password) == created[influx["INFLUXDB_READ_USER"]]


def test_no_secret_has_a_default() -> None:
    for service in _services().values():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key and key != "SENSORNET_MQTT_FLEET_PASSWORD":  # test-only, below
                _secret_variable(str(value).replace("$$", "$"))  # raises with the culprit
    example = (DEPLOY / ".env.example").read_text()
    for line in example.splitlines():
        if "PASSWORD=" in line:
            assert line.split("=", 1)[1] == "", line  # no example value to leave in place
    for env_file in (DEPLOY / "systemd").glob("*.env.example"):
        for line in env_file.read_text().splitlines():
            if "PASSWORD=" in line:
                assert line.split("=", 1)[1] == "", f"{env_file.name}: {line}"


def test_broker_serves_devices_over_tls_from_the_documented_certificate_folder() -> None:
    mosquitto = _services()["mosquitto"]
    assert mosquitto["ports"] == ["8883:8883"], "devices: TLS only; 1883 stays internal"
    assert "./certs:/mosquitto/certs:ro" in mosquitto["volumes"]
    listener = _tls_listener((DEPLOY / "mosquitto" / "mosquitto.conf").read_text())
    assert "certfile /mosquitto/certs/server.crt" in listener
    assert "keyfile /mosquitto/certs/server.key" in listener
    readme = (DEPLOY / "README.md").read_text()
    for documented in ("deploy/certs/server.crt", "deploy/certs/server.key",
                       "/etc/mosquitto/certs/server.crt", "SENSORNET_MQTT_CA_FILE"):  # fmt: skip
        assert documented in readme, documented
    ignored = (DEPLOY / "certs" / ".gitignore").read_text().splitlines()
    assert "*" in ignored, "keys must never be committed"


def test_systemd_units_each_load_their_own_influxdb_user() -> None:
    wanted = {
        "sensornet-storage.service": ("influx-admin.env", "SENSORNET_INFLUX_USER"),
        "sensornet-ingest@.service": ("influx-ingest.env", "SENSORNET_INFLUX_USER"),
        "sensornet-alarms.service": ("influx-alarms.env", "SENSORNET_INFLUX_USER"),
        "sensornet-api.service": ("influx-read.env", "SENSORNET_INFLUX_READ_USER"),
        "sensornet-northbound.service": ("influx-read.env", "SENSORNET_INFLUX_READ_USER"),
    }
    for unit, (env_file, variable) in wanted.items():
        text = (DEPLOY / "systemd" / unit).read_text()
        files = re.findall(r"^EnvironmentFile=(\S+)$", text, re.M)
        files = [f for f in files if f != "-/etc/sensornet/ingest-%i.env"]  # its port only
        assert files == ["/etc/sensornet/sensornet.env", f"/etc/sensornet/{env_file}"], unit
        example = (DEPLOY / "systemd" / f"{env_file}.example").read_text()
        assert re.search(rf"^{variable}=\w+$", example, re.M), env_file
    shared = (DEPLOY / "sensornet.env.example").read_text()
    assert not re.search(r"^SENSORNET_INFLUX_(READ_)?(USER|PASSWORD)=", shared, re.M)


def _tls_listener(conf: str) -> str:
    """The lines of the ``listener 8883`` block."""
    block = conf.split("\nlistener 8883", 1)[1]
    return "listener 8883" + block.split("\nlistener ", 1)[0]


def test_the_shipped_tls_listener_runs_on_a_real_mosquitto(tmp_path: Path) -> None:
    """deploy/mosquitto/mosquitto.conf's TLS lines, certificate paths moved to a throwaway
    CA's files, on Mosquitto 2.0: a client verifying against that CA publishes."""
    ensure_binaries()
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    certs = tmp_path / "certs"
    certs.mkdir()
    issued.private_key_pem.write_to_path(str(certs / "server.key"))
    (certs / "server.crt").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    ca.cert_pem.write_to_path(str(certs / "ca.crt"))
    port = free_port()
    listener = _tls_listener((DEPLOY / "mosquitto" / "mosquitto.conf").read_text())
    listener = listener.replace("/mosquitto/certs/", f"{certs}/")
    listener = listener.replace("listener 8883 0.0.0.0", f"listener {port} 127.0.0.1")
    conf = tmp_path / "mosquitto.conf"
    # as wiring.services does: stay the user who owns the temporary files
    conf.write_text(
        f"per_listener_settings false\nallow_anonymous true\nuser {getpass.getuser()}\n{listener}"
    )
    broker = subprocess.Popen(
        [find_binary("mosquitto") or "mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        blaster = BulkPublisher(
            "127.0.0.1", port, "deploy-tls", "anyone", "", tls=MqttTls(certs / "ca.crt")
        )

        async def publish() -> int:
            deadline = time.monotonic() + 20
            while True:
                try:
                    return await blaster.publish_all([(b"t", b"x")])
                except ConnectionRefusedError:  # still starting
                    if time.monotonic() > deadline or broker.poll() is not None:
                        raise
                    await asyncio.sleep(0.05)

        assert asyncio.run(publish()) == 1
    finally:
        broker.terminate()
        _, errors = broker.communicate(timeout=20)
    assert b"Error" not in errors, errors.decode()


def test_every_long_running_compose_service_has_a_health_check() -> None:
    """One-shot jobs aside (restart "no"), each service says when it is healthy; the
    platform's own ask their probes through `sensornet probe` (no curl in the image)."""
    probes = {"api": "8000/health", "ingester": "9464/readyz", "alarms": "9465/readyz"}
    for name, service in _services().items():
        if service.get("restart") == "no" or "profiles" in service:
            continue
        check = service.get("healthcheck", {}).get("test")
        assert check, f"{name} has no health check"
        if name in probes:
            assert check[:3] == ["CMD", "sensornet", "probe"], name
            assert check[3].endswith(probes[name]), (name, check)
    env = _services()["api"]["environment"]
    assert env["SENSORNET_REGISTRY_URL"].startswith("postgresql+asyncpg://"), "one shared registry"


def test_ingester_serves_the_http_input_on_its_published_port() -> None:
    """Devices that push over HTTP reach the ingester's HTTP input: on in its inputs, on
    all the container's addresses, its port published (host-local, behind the host's TLS
    proxy); the simulator's HTTP devices post to the same port by service name; the
    systemd unit and the env example name the setting and the port."""
    services = _services()
    env = services["ingester"]["environment"]
    assert "http" in env["SENSORNET_INGEST_INPUTS"].split(",")
    assert env["SENSORNET_INGEST_HTTP_HOST"] == "0.0.0.0"
    port = env["SENSORNET_INGEST_HTTP_PORT"]
    assert services["ingester"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    sim = services["simulator"]
    assert sim["environment"]["SENSORNET_INGEST_HTTP_HOST"] == "ingester"
    assert sim["environment"]["SENSORNET_INGEST_HTTP_PORT"] == port
    assert "--http-share" in sim["command"]
    unit = (DEPLOY / "systemd" / "sensornet-ingest@.service").read_text()
    example = (DEPLOY / "sensornet.env.example").read_text()
    for text in (unit, example):
        assert "SENSORNET_INGEST_INPUTS=mqtt,http" in text
        assert f"SENSORNET_INGEST_HTTP_PORT={port}" in text
