"""Per-device credentials: each simulated device has its own connection and identity, the
broker's ACL refuses its readings on another device's topic, and the account knows it
(``acl_denied``: neither stored nor refused by the platform)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FLEET_PASSWORD, INGEST_PASSWORD
from support import running

from gateway_sim.faults import FaultPlan, GroundTruth
from gateway_sim.fleet import build_fleet
from gateway_sim.publisher import LivePublisher
from gateway_sim.report import account
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester
from wiring.services import Mosquitto, broker_acl, free_port

FLEET = build_fleet(
    load_catalogue(), load_district(), 8, seed=21, types=["air_quality", "noise"], gateways=False
)
CREDENTIALS = {d.id: f"pw-{d.id}" for d in FLEET}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:  # overrides conftest's: device users
    service = Mosquitto(
        name="mosquitto",
        home=tmp_path / "mosquitto",
        port=free_port(),
        users={"ingester": INGEST_PASSWORD, "simulator": FLEET_PASSWORD, **CREDENTIALS},
        acl=broker_acl("city/v1", "ingester", "simulator"),
    )
    service.start()
    yield service
    service.stop()


async def test_per_device_identities_and_acl_denied_faults(
    settings: Settings, influx: InfluxClient
) -> None:
    await register_fleet(settings, FLEET)
    start_ns = time.time_ns() - 10**9
    publisher = LivePublisher(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=FLEET_PASSWORD,
        topic_prefix=settings.topic_prefix,
        fleet=FLEET,
        catalogue=load_catalogue(),
        first_report_within_s=0.2,
        interval_scale=0.1 / 60,
        credentials=CREDENTIALS,
        faults=FaultPlan(rate=0.4, kinds=("foreign_topic",), seed=3),
        ground_truth=GroundTruth(),
    )
    async with running(run_ingester, settings):
        await publisher.run(asyncio.Event(), max_rounds=5)
        report = await account(
            influx, publisher.truth, {d.id: d.type for d in FLEET}, load_catalogue(), start_ns
        )
    assert len({id(link) for link in publisher._links.values()}) == len(FLEET)
    denied = report.totals["acl_denied"]
    assert denied == publisher.truth.faults["foreign_topic"] > 0
    assert report.totals["expected_rejected"] == report.totals["rejected"] == 0
    assert report.totals["stored"] == 5 * len(FLEET) - denied
    assert report.exact, report.as_json()
