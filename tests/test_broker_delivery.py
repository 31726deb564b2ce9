"""Credential changes reaching a real Mosquitto through the real API: a broker that is down
or does not reload is an error the engineer sees (503 problem), two API workers
registering at once lose nothing, and the fleet identity exists only while it is used."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from support import running, sensor_spec, wait_until
from typer.testing import CliRunner

from cli.main import app
from sensornet.broker_auth import fleet_identity
from sensornet.broker_files import connack
from sensornet.errors import ConfigError
from sensornet.mqtt_wire import connect_packet
from sensornet.settings import Settings
from wiring.mosquitto_plugin import subscribe_acl_plugin
from wiring.parts import run_api
from wiring.services import Mosquitto, find_binary, free_port, platform_services


def accepted(settings: Settings, user: str, password: str) -> bool:
    return connack(settings.mqtt_host, settings.mqtt_port, user, password) == 0


async def test_a_broker_that_is_down_refuses_the_change_before_anything_is_written(
    settings: Settings, api_keys: dict[str, str], broker: Mosquitto
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        assert (await h.post("/sensors", json=sensor_spec("NS-UP"))).status_code == 201
        broker.stop()
        answer = await h.post("/sensors", json=sensor_spec("NS-DOWN"))
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "nothing was changed" in answer.json()["detail"]
        assert (await h.get("/sensors/NS-DOWN")).status_code == 404
        revoke = await h.delete("/sensors/NS-UP/credentials")
        assert revoke.status_code == 503
        assert (await h.get("/sensors/NS-UP")).json()["has_credentials"] is True


async def test_a_broker_that_does_not_reload_is_reported_not_ignored(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    # "watch": the broker's host should reload on file change; here nothing watches
    unwatched = settings.model_copy(
        update={"broker_reload": "watch", "broker_confirm_timeout_s": 2.0}
    )
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with (
        running(run_api, unwatched),
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as h,
    ):
        answer = await h.post("/sensors", json=sensor_spec("NS-W"))
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert "NS-W is registered" in detail and "did not confirm" in detail
        assert "sync-broker" in detail and "mqtt_password" not in answer.text


async def test_two_api_workers_registering_at_once_lose_no_device(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    second = settings.model_copy(update={"api_port": free_port()})
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with (
        running(run_api, settings),
        running(run_api, second),
        httpx.AsyncClient(headers=headers, timeout=120) as http,
    ):
        urls = [f"http://{s.api_host}:{s.api_port}/sensors" for s in (settings, second)]
        ids = [f"NS-P{k:02d}" for k in range(60)]
        answers = await asyncio.gather(
            *(http.post(urls[k % 2], json=sensor_spec(i)) for k, i in enumerate(ids))
        )
    assert [a.status_code for a in answers] == [201] * len(ids), answers[0].text
    # no sync after the last answer: each device connects with what its own answer gave
    refused = [
        a.json()["id"]
        for a in answers
        if not accepted(settings, a.json()["mqtt_username"], a.json()["mqtt_password"])
    ]
    assert refused == []


async def test_fleet_identity_exists_only_while_a_simulator_uses_it(tmp_path: Path) -> None:
    assert Settings(_env_file=None).mqtt_fleet_password is None  # type: ignore[call-arg]
    settings = Settings(
        state_dir=tmp_path,
        mqtt_port=free_port(),
        mqtt_fleet_password=f"fleet-{uuid.uuid4().hex}",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    broker, _ = platform_services(settings)  # the broker `sensornet services up` runs
    assert settings.mqtt_fleet_user not in broker.users
    assert f"user {settings.mqtt_fleet_user}" not in broker.acl
    broker.start()
    try:
        fleet = (settings.mqtt_fleet_user, settings.fleet_password())
        assert not accepted(settings, *fleet)
        async with fleet_identity(settings):
            assert accepted(settings, *fleet)
        assert not accepted(settings, *fleet)
    finally:
        broker.stop()
    off = settings.model_copy(update={"mqtt_fleet_password": None})
    with pytest.raises(ConfigError, match="SENSORNET_MQTT_FLEET_PASSWORD"):
        async with fleet_identity(off):
            pass


def test_production_refuses_the_development_ingest_password() -> None:
    with pytest.raises(ValueError, match="SENSORNET_MQTT_INGEST_PASSWORD"):
        Settings(environment="production", _env_file=None)  # type: ignore[call-arg]
    ok = Settings(
        environment="production",
        mqtt_ingest_password="a-secret-of-our-own",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    assert ok.mqtt_fleet_password is None


async def test_revoked_device_is_cut_off_within_seconds(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        issued = (await h.post("/sensors", json=sensor_spec("NS-R"))).json()
        assert accepted(settings, "NS-R", issued["mqtt_password"])  # at once, no retry
        reader, writer = await asyncio.open_connection(settings.mqtt_host, settings.mqtt_port)
        try:
            writer.write(connect_packet("held-NS-R", "NS-R", issued["mqtt_password"], 0))
            assert (await reader.readexactly(4))[3] == 0
            assert (await h.delete("/sensors/NS-R/credentials")).status_code == 200
            assert await asyncio.wait_for(reader.read(), 20) == b""  # the broker closed it
        finally:
            writer.close()
        assert not accepted(settings, "NS-R", issued["mqtt_password"])


async def test_compose_shape_reloads_through_run_sh(
    settings: Settings, api_keys: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/mosquitto/run.sh with deploy/mosquitto/mosquitto.conf (paths made local): the
    store comes from `sensornet broker setup`, the API writes it in "watch" mode."""
    deploy = Path(__file__).parent.parent / "deploy" / "mosquitto"
    auth, port = tmp_path / "broker-auth", free_port()
    conf = (deploy / "mosquitto.conf").read_text().split("\nlistener 8883")[0]  # no TLS here
    conf = conf.replace("/broker-auth", str(auth))
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/")
    # the plugin the compose image builds (deploy/mosquitto/Dockerfile), built here
    conf = conf.replace("/usr/lib/sensornet_subscribe_acl.so", str(subscribe_acl_plugin()))
    (tmp_path / "m.conf").write_text(f"{conf}\nuser {getpass.getuser()}\n")
    watched = settings.model_copy(
        update={"mqtt_port": port, "broker_auth_dir": auth, "broker_reload": "watch"}
    )
    for name, value in {
        "SENSORNET_STATE_DIR": str(tmp_path),
        "SENSORNET_BROKER_AUTH_DIR": str(auth),
        "SENSORNET_MQTT_INGEST_PASSWORD": settings.mqtt_ingest_password.get_secret_value(),
    }.items():
        monkeypatch.setenv(name, value)
    setup = await asyncio.to_thread(CliRunner().invoke, app, ["broker", "setup"])
    assert setup.exit_code == 0, setup.output
    env = {
        **os.environ,
        "MOSQUITTO_CONF": str(tmp_path / "m.conf"),
        "MOSQUITTO_BIN": find_binary("mosquitto") or "mosquitto",
        "RELOAD_POLL_S": "0.2",
    }
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220 - a server process, stopped in finally
        ["sh", str(deploy / "run.sh")], env=env, stdout=log, stderr=log
    )
    try:
        assert await wait_until(lambda: _port_open(port))
        ingest = (watched.mqtt_ingest_user, watched.mqtt_ingest_password.get_secret_value())
        assert accepted(watched, *ingest)
        assert not accepted(watched, "simulator", "fleet-test-pw")  # no fleet identity
        base = f"http://{settings.api_host}:{settings.api_port}"
        headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
        async with (
            running(run_api, watched),
            httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as h,
        ):
            issued = (await h.post("/sensors", json=sensor_spec("NS-CW"))).json()
            assert accepted(watched, "NS-CW", issued["mqtt_password"])
            assert (await h.delete("/sensors/NS-CW/credentials")).status_code == 200
            assert not accepted(watched, "NS-CW", issued["mqtt_password"])
    finally:
        proc.terminate()
        assert proc.wait(30) == 0  # the broker stopped cleanly with the script
        log.close()


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True
