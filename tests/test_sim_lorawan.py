"""The simulator as a LoRaWAN network server: registered LoRaWAN sensors report through a
Mosquitto standing in for the network server's broker, as ChirpStack and The Things Stack
publish, decoded and as raw codec bytes; the platform stores every uplink sent."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr
from support import running, wait_until

from gateway_sim.faults import FaultPlan, GroundTruth
from gateway_sim.lorawan import dev_eui_for
from gateway_sim.ns_publisher import LORAWAN_FAULTS, publish_rounds, stored_of
from gateway_sim.report import account
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


@pytest.mark.parametrize(("network", "raw"), [("chirpstack", False), ("tts", True)])
async def test_the_report_accounts_for_every_uplink_with_faults(
    settings: Settings, influx: InfluxClient, tmp_path: Path, network: str, raw: bool
) -> None:
    """The ground-truth report of ``simulate --report``, for uplinks through a network
    server: every fault kind of an uplink lands as expected (a skipped fCnt not sent, the
    same uplink twice stored once, the NS's time an hour ahead and a value out of range
    refused with their reason and the fCnt as seq), and a second NS whose broker refuses
    the connection loses its uplinks on the device, not on the platform."""
    sub, pub = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    broker = network_server_broker(tmp_path / "ns", free_port(), "lorawan-in", sub, pub)
    broker.start()
    try:
        catalogue = load_catalogue()
        fleet = [replace(d, dev_eui=dev_eui_for(d.id)) for d in default_fleet(30)]
        fleet = [d for d in fleet if not d.gateway_id]
        refused, fleet = fleet[:3], fleet[3:]
        await register_fleet(settings, fleet + refused)
        settings = settings.model_copy(update={
            "ingest_inputs": ["lorawan"], "lorawan_network": network,
            "lorawan_mqtt_port": broker.port, "lorawan_mqtt_user": "lorawan-in",
            "lorawan_mqtt_password": SecretStr(sub)})  # fmt: skip
        truth = GroundTruth(tmp_path / "truth.jsonl")
        start_ns = time.time_ns() - 10**9
        common = {"host": "127.0.0.1", "port": broker.port, "username": NS_PUBLISHER,
                  "network": network, "catalogue": catalogue, "district": load_district(),
                  "interval_s": 0.1, "raw": raw, "truth": truth}  # fmt: skip
        async with running(run_ingester, settings):
            sent = await publish_rounds(fleet=fleet, rounds=4, password=pub,
                                        faults=FaultPlan(rate=0.4, seed=3), **common)  # fmt: skip
            lost = await publish_rounds(fleet=refused, rounds=2, password="wrong", **common)
            truth.close()
            types = {d.id: d.type for d in fleet + refused}
            report = await account(influx, truth, types, catalogue, start_ns, timeout_s=60)
    finally:
        broker.stop()
    t = report.totals
    assert report.exact, report.as_json()
    assert set(truth.faults) == set(LORAWAN_FAULTS), truth.faults  # each kind exercised
    assert t["sent"] == len(sent) + len(lost) == 4 * len(fleet) - t["not_sent"] + 2 * 3
    assert t["lost_on_devices"] == 2 * 3 == sum(truth.unacked.values()), t
    assert t["stored"] == t["expected_stored"] - 2 * 3, t
    assert t["rejected"] == t["expected_rejected"] == truth.faults["clock_skew"] + truth.faults[
        "out_of_range"], t  # fmt: skip
    by_reason = Counter({r: c["platform"] for r, c in report.by_reason.items()})
    assert by_reason["ts_future"] == truth.faults["clock_skew"], report.by_reason


@pytest.mark.parametrize("report", [False, True])
def test_the_cli_command_publishes_and_checks(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, report: bool
) -> None:
    """``sensornet simulate-lorawan``: the registry's LoRaWAN sensors through a network
    server's broker to the real ingester; its JSON line says nothing is missing, and with
    ``--report --faults`` carries the exact account of ``simulate --report``."""
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
                if report:
                    args += ["--report", "--faults", "0.5", "--seed", "4", "--ground-truth",
                             str(tmp_path / "truth.jsonl")]  # fmt: skip
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
    if not report:
        assert (out["sensors"], out["sent"], out["stored"], out["missing"]) == (4, 8, 8, 0), out
        return
    assert out["report"]["exact"] and out["missing"] == 0, out
    injected = (tmp_path / "truth.jsonl").read_text().splitlines()
    assert out["faults"] == out["report"]["totals"]["injected_faults"] == len(injected) > 0
    assert out["acked"] == out["sent"] == out["report"]["totals"]["sent"], out
