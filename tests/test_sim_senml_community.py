"""The simulator as SenML devices (JSON and CBOR, named by URN) and as Sensor.Community
nodes pushing over the HTTP input as the airrohr firmware does: the ground-truth report
against the real ingester is exact."""

from __future__ import annotations

import asyncio
import time

from pydantic import SecretStr
from support import running

from gateway_sim.payloads import device_format
from gateway_sim.publisher import LivePublisher, community_push
from gateway_sim.report import account
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_ingester
from wiring.services import free_port


async def test_senml_devices_and_community_nodes_are_accounted_exactly(
    settings: Settings, influx: InfluxClient
) -> None:
    both = settings.model_copy(
        update={"ingest_inputs": ["mqtt", "http"], "ingest_http_port": free_port(),
                "ingest_http_integrations": {"community": SecretStr("c-token-0123456789")}}
    )  # fmt: skip
    fleet = default_fleet(45)
    direct = [d for d in fleet if not d.gateway_id]
    speaks = {device_format(d.id, d.type) for d in direct}
    assert {"senml", "senml_cbor", "sensor_community", "flat"} <= speaks
    assert all(d.senml_name for d in direct if device_format(d.id, d.type).startswith("senml"))
    await register_fleet(both, fleet)
    start_ns = time.time_ns() - 10**9
    push = community_push(both)
    assert push is not None
    publisher = LivePublisher(
        host=both.mqtt_host, port=both.mqtt_port, username="simulator",
        password=both.fleet_password(), topic_prefix=both.topic_prefix, fleet=fleet,
        catalogue=load_catalogue(), first_report_within_s=0.3, interval_scale=0.2 / 3600,
        gateway_flush_s=0.1, http_push=push,
    )  # fmt: skip
    async with running(run_ingester, both):
        await publisher.run(asyncio.Event(), max_rounds=3)
        report = await account(
            influx, publisher.truth, {d.id: d.type for d in fleet}, load_catalogue(), start_ns
        )
        community = rows(await influx.query('SELECT * FROM "community_air"'))
    assert report.totals["stored"] == report.totals["expected_stored"] == 3 * len(fleet)
    assert report.totals["missing"] == 0 and report.totals["rejected"] == 0, report.as_json()
    assert report.exact
    nodes = {d.id for d in fleet if d.type == "community_air"}
    assert nodes and {r["sensor_id"] for r in community} == nodes
    assert all(300 <= float(r["pressure"]) <= 1100 for r in community)  # Pa pushed, hPa kept
