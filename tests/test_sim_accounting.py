"""The simulator's ground truth against the real platform: a clean run is fully stored,
a fault run's refusals are exactly the injected faults, with the platform's reasons."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson
from support import running

from gateway_sim.faults import FAULT_KINDS, FaultPlan, GroundTruth
from gateway_sim.publisher import LivePublisher
from gateway_sim.report import account, compare, stored_after_all
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_ingester


def _publisher(settings: Settings, fleet: list, **kw: object) -> LivePublisher:
    catalogue = load_catalogue()
    return LivePublisher(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=settings.fleet_password(),
        topic_prefix=settings.topic_prefix,
        fleet=fleet,
        catalogue=catalogue,
        first_report_within_s=0.3,
        interval_scale=0.2 / 3600,  # every type reports within 0.2 s
        gateway_flush_s=0.1,
        **kw,  # type: ignore[arg-type]
    )


async def test_clean_run_reports_everything_stored(
    settings: Settings, influx: InfluxClient
) -> None:
    fleet = default_fleet(40)
    await register_fleet(settings, fleet)
    start_ns = time.time_ns() - 10**9
    publisher = _publisher(settings, fleet)
    async with running(run_ingester, settings):
        await publisher.run(asyncio.Event(), max_rounds=3)
        report = await account(
            influx, publisher.truth, {d.id: d.type for d in fleet}, load_catalogue(), start_ns
        )
    assert report.totals["sent"] == 3 * len(fleet) == publisher.stats.sent, report.as_json()
    assert report.totals["stored"] == report.totals["expected_stored"] == 3 * len(fleet)
    assert report.totals["missing"] == 0, report.as_json()
    assert report.totals["rejected"] == report.totals["unexpected"] == 0
    assert report.exact
    assert any(d.gateway_id for d in fleet)  # packs were part of it


async def test_fault_run_reports_exactly_the_injected_faults(
    settings: Settings, influx: InfluxClient, tmp_path
) -> None:
    fleet = default_fleet(60)
    await register_fleet(settings, fleet)
    start_ns = time.time_ns() - 10**9
    truth_file = tmp_path / "truth.jsonl"
    publisher = _publisher(
        settings,
        fleet,
        faults=FaultPlan(rate=0.35, seed=7),
        ground_truth=GroundTruth(truth_file),
    )
    async with running(run_ingester, settings):
        await publisher.run(asyncio.Event(), max_rounds=4)
        report = await account(
            influx, publisher.truth, {d.id: d.type for d in fleet}, load_catalogue(), start_ns
        )
    injected = [orjson.loads(line) for line in truth_file.read_bytes().splitlines()]
    kinds = {r["fault"] for r in injected}
    assert kinds == set(FAULT_KINDS), kinds  # every kind was exercised
    assert report.totals["injected_faults"] == len(injected)
    assert report.totals["expected_rejected"] > 0
    assert report.unmatched_expected == [] and report.unexpected_rejects == []
    assert report.totals["rejected"] == report.totals["expected_rejected"]
    assert report.totals["missing"] == 0 and report.totals["extra"] == 0
    for reason, counts in report.by_reason.items():
        assert counts["injected"] == counts["platform"], reason
    assert report.exact


def test_lost_on_device_is_told_from_the_platforms_missing() -> None:
    """Pure arithmetic of the report: A sent 4, the broker never acknowledged seq 2 and 3;
    seq 2 is stored all the same (its PUBACK was lost), seq 3 is not (the device's loss);
    B's seq 1 was acknowledged but is not stored (the platform's loss)."""
    truth = GroundTruth()
    for device, n in (("A", 4), ("B", 2)):
        for _ in range(n):
            truth.clean(device)
    truth.never_acknowledged("A", 2)
    truth.never_acknowledged("A", 3)
    stored = Counter({"A": 3, "B": 1})
    report = compare(truth, ["A", "B"], stored, Counter(), Counter({"A": 1}))
    by = {a.device: a for a in report.devices}
    assert (by["A"].lost_on_device, by["A"].missing) == (1, 0)
    assert (by["B"].lost_on_device, by["B"].missing) == (0, 1)
    assert report.totals["lost_on_devices"] == 1 and report.totals["missing"] == 1
    assert not report.exact


async def test_unacknowledged_readings_are_looked_up_in_storage(influx: InfluxClient) -> None:
    start_ns = time.time_ns() - 10**9
    now = time.time_ns()
    lines = [f"noise,sensor_id=NS-1,subdistrict=x laeq=50,seq={s}i {now + s}" for s in (0, 2)]
    await influx.write(("\n".join(lines) + "\n").encode())
    keys = {("NS-1", 1), ("NS-1", 2), ("NS-2", 0), ("NOT-IN-RUN", 5)}
    found = await stored_after_all(influx, {"NS-1": "noise", "NS-2": "noise"}, keys, start_ns)
    assert found == Counter({"NS-1": 1, "NS-2": 0})
