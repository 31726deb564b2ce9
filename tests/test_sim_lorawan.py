"""The simulator as a LoRaWAN network server: registered LoRaWAN sensors report through a
Mosquitto standing in for the network server's broker, as ChirpStack and The Things Stack
publish, decoded and as raw codec bytes; the platform stores every uplink sent."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr
from support import running, wait_until

from gateway_sim.lorawan import dev_eui_for
from gateway_sim.ns_publisher import publish_rounds, stored_of
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.lorawan import NS_PUBLISHER, network_server_broker
from wiring.parts import default_fleet, register_fleet, run_ingester
from wiring.services import free_port


@pytest.mark.parametrize(("network", "raw"), [("chirpstack", True), ("tts", False)])
async def test_every_uplink_sent_is_stored(
    settings: Settings, influx: InfluxClient, tmp_path: Path, network: str, raw: bool
) -> None:
    sub, pub = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    broker = network_server_broker(tmp_path / "ns", free_port(), "lorawan-in", sub, pub)
    broker.start()
    try:
        catalogue = load_catalogue()
        fleet = [replace(d, dev_eui=dev_eui_for(d.id))
                 for d in default_fleet(len(catalogue.types))]  # fmt: skip
        await register_fleet(settings, fleet)
        settings = settings.model_copy(update={
            "ingest_inputs": ["lorawan"], "lorawan_network": network,
            "lorawan_mqtt_port": broker.port, "lorawan_mqtt_user": "lorawan-in",
            "lorawan_mqtt_password": SecretStr(sub)})  # fmt: skip
        async with running(run_ingester, settings):
            sent = await publish_rounds(
                host="127.0.0.1", port=broker.port, username=NS_PUBLISHER, password=pub,
                network=network, fleet=fleet, catalogue=catalogue, district=load_district(),
                rounds=2, interval_s=0.2, raw=raw)  # fmt: skip
            assert len(sent) == 2 * len(fleet)

            async def all_stored() -> bool:
                return sum((await stored_of(influx, fleet, sent)).values()) == len(sent)

            await wait_until(all_stored, timeout_s=30)
        letters = await influx.query('SELECT count(payload_bytes) FROM "dead_letter"')
        assert not letters, letters
    finally:
        broker.stop()


def test_the_cli_command_publishes_and_checks(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sensornet simulate-lorawan``: the registry's LoRaWAN sensors through a network
    server's broker to the real ingester; its JSON line says nothing is missing."""
    import asyncio
    import json

    from typer.testing import CliRunner

    from cli.main import app

    sub, pub = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    broker = network_server_broker(tmp_path / "ns-cli", free_port(), "lorawan-in", sub, pub)
    broker.start()
    fleet = [replace(d, dev_eui=dev_eui_for(d.id)) for d in default_fleet(4)]
    lora = settings.model_copy(update={
        "ingest_inputs": ["lorawan"], "lorawan_mqtt_port": broker.port,
        "lorawan_mqtt_user": "lorawan-in", "lorawan_mqtt_password": SecretStr(sub)})  # fmt: skip
    for name, value in {"SENSORNET_STATE_DIR": str(settings.state_dir),
                        "SENSORNET_INFLUX_URL": settings.influx_url,
                        "SENSORNET_INFLUX_DB": settings.influx_db,
                        "SENSORNET_SIM_NS_PASSWORD": pub}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    async def scenario() -> str:
        await register_fleet(settings, fleet)
        async with InfluxClient(settings.influx_url, settings.influx_db) as influx:
            await influx.create_database()
        try:
            async with running(run_ingester, lora):
                args = ["simulate-lorawan", "--rounds", "2", "--interval", "0.2", "--port",
                        str(broker.port)]  # fmt: skip
                result = await asyncio.to_thread(CliRunner().invoke, app, args)
                assert result.exit_code == 0, result.output
                return result.stdout
        finally:
            async with InfluxClient(settings.influx_url, settings.influx_db) as influx:
                await influx.drop_database(settings.influx_db)

    try:
        out = json.loads(asyncio.run(scenario()).strip().splitlines()[-1])
    finally:
        broker.stop()
    assert (out["sensors"], out["sent"], out["stored"], out["missing"]) == (4, 8, 8, 0), out
