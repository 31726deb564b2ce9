"""The simulator as HTTP push devices, against real processes: Mosquitto, InfluxDB and
``sensornet ingest`` in its own process with the inputs mqtt and http. Part of the fleet
(direct sensors and gateways) posts its native readings to the ingester's HTTP input with
its own registry credentials and retries until answered; the ground-truth report is exact,
and what was never answered is the device's own loss."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator

import httpx
from ingester_process import IngesterProcess
from pydantic import SecretStr
from support import wait_until

from gateway_sim.faults import PACK_FAULTS, FaultPlan, GroundTruth
from gateway_sim.payloads import pushes_over_http
from gateway_sim.publisher import LivePublisher, http_push, http_senders
from gateway_sim.report import account
from sensornet.broker_auth import issue_credentials
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet
from wiring.services import free_port


def with_http(settings: Settings, community: bool) -> Settings:
    integrations = {"community": SecretStr("c-token-0123456789")} if community else {}
    return settings.model_copy(
        update={"ingest_inputs": ["mqtt", "http"], "ingest_http_port": free_port(),
                "ingest_metrics_port": free_port(), "ingest_http_integrations": integrations}
    )  # fmt: skip


@contextlib.contextmanager
def ingester(settings: Settings, **extra: str) -> Iterator[IngesterProcess]:
    integrations = {k: v.get_secret_value() for k, v in settings.ingest_http_integrations.items()}
    env = {
        "SENSORNET_INGEST_INPUTS": ",".join(settings.ingest_inputs),
        "SENSORNET_INGEST_HTTP_PORT": str(settings.ingest_http_port),
        "SENSORNET_INGEST_HTTP_INTEGRATIONS": json.dumps(integrations),
        "SENSORNET_INGEST_BATCH_INTERVAL_S": "0.05",
        **extra,
    }
    process = IngesterProcess(settings, extra_env=env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def ready(settings: Settings) -> None:
    """Both inputs receive: the ingester says ready, and the HTTP input answers."""

    async def up() -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            try:
                metrics = f"http://127.0.0.1:{settings.ingest_metrics_port}/readyz"
                listener = f"http://127.0.0.1:{settings.ingest_http_port}/healthz"
                answers = [await client.get(metrics), await client.get(listener)]
            except httpx.HTTPError:
                return False
        return all(a.status_code == 200 for a in answers)

    await wait_until(up, timeout_s=30, interval_s=0.2)


async def passwords(settings: Settings, ids: list[str]) -> dict[str, str]:
    async with open_registry(settings.registry_database_url) as registry:
        return await issue_credentials(registry, ids, "test")


def publisher(
    settings: Settings, fleet: list[DeviceInfo], credentials: dict[str, str], **extra: object
) -> LivePublisher:
    push = http_push(settings, device_share=extra.pop("share", 0.4))  # type: ignore[arg-type]
    return LivePublisher(
        host=settings.mqtt_host, port=settings.mqtt_port, username="simulator",
        password=settings.fleet_password(), topic_prefix=settings.topic_prefix, fleet=fleet,
        catalogue=load_catalogue(), first_report_within_s=0.3, interval_scale=0.2 / 3600,
        gateway_flush_s=0.1, http_push=push, credentials=credentials,
        ground_truth=GroundTruth(), **extra,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_http_devices_in_the_fleet_are_accounted_exactly(
    settings: Settings, influx: InfluxClient
) -> None:
    both = with_http(settings, community=True)
    fleet = default_fleet(45)
    chosen = http_senders(fleet, http_push(both, 0.4), community_over_http=True)
    gateways = {d.gateway_id for d in fleet if d.gateway_id}
    assert chosen and set(chosen) & gateways and set(chosen) - gateways  # both kinds
    await register_fleet(both, fleet)
    credentials = await passwords(both, chosen)
    start_ns = time.time_ns() - 10**9
    plan = FaultPlan(rate=0.3, kinds=tuple(sorted(PACK_FAULTS)), seed=5)
    sim = publisher(both, fleet, credentials, faults=plan)
    assert sim.over_http == set(chosen)
    with ingester(both):
        await ready(both)
        await sim.run(asyncio.Event(), max_rounds=3)
        report = await account(
            influx, sim.truth, {d.id: d.type for d in fleet}, load_catalogue(), start_ns
        )
    totals = report.totals
    assert report.exact, report.as_json()
    assert totals["stored"] == totals["expected_stored"] > 0
    assert totals["rejected"] == totals["expected_rejected"] > 0
    assert totals["lost_on_devices"] == 0 and totals["missing"] == 0
    behind = {d.id for d in fleet if d.gateway_id in sim.over_http}
    assert behind and behind <= sim.truth.over_http
    assert 0 < totals["sent_over_http"] < totals["sent"]
    assert totals["stored_over_http"] > 0 and totals["rejected_over_http"] > 0
    answers = sim.stats.http_answers
    assert answers[200] > 0 and answers[422] > 0  # refusals answered, not retried
    assert set(answers) <= {200, 422}, answers


async def test_http_devices_retry_until_answered_and_book_what_never_was(
    settings: Settings, influx: InfluxClient
) -> None:
    """No listener yet: the devices' requests go unanswered. Given up after a short drain,
    every reading sent is lost on the device (never answered 2xx), none missing. Then the
    ingester starts while a second run is retrying, taking one waiting request at a time
    (others are answered 429): every reading is answered and stored."""
    both = with_http(settings, community=False)
    fleet = [d for d in default_fleet(40) if not d.gateway_id]
    assert all(pushes_over_http(d.id, 1.0) for d in fleet)
    await register_fleet(both, fleet)
    credentials = await passwords(both, [d.id for d in fleet])
    types = {d.id: d.type for d in fleet}
    start_ns = time.time_ns() - 10**9

    lost = publisher(both, fleet, credentials, share=1.0, drain_s=0.5)
    assert lost.over_http == {d.id for d in fleet} and not lost._senders()
    await lost.run(asyncio.Event(), max_rounds=1)
    early = await account(influx, lost.truth, types, load_catalogue(), start_ns, timeout_s=2)
    assert early.totals["sent"] == early.totals["sent_over_http"] == len(fleet)
    assert early.totals["lost_on_devices"] == early.totals["lost_on_devices_over_http"]
    assert early.totals["lost_on_devices"] == len(fleet) and early.totals["missing"] == 0
    assert set(lost.stats.http_answers) == {0}  # connection refused, retried until cut off

    start_ns = time.time_ns() - 10**9
    late = publisher(both, fleet, credentials, share=1.0, drain_s=60.0)
    run = asyncio.create_task(late.run(asyncio.Event(), max_rounds=2))
    try:
        await wait_until(lambda: _some_unanswered(late), timeout_s=10)
        with ingester(both, SENSORNET_INGEST_HTTP_MAX_WAITING="1"):
            await ready(both)
            await asyncio.wait_for(run, timeout=60)
            report = await account(influx, late.truth, types, load_catalogue(), start_ns)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    answers = late.stats.http_answers
    assert answers[0] > 0 and answers[429] > 0 and answers[200] > 0, answers
    assert set(answers) <= {0, 200, 429}, answers
    assert report.exact, report.as_json()
    assert report.totals["stored"] == report.totals["sent"] == 2 * len(fleet)
    assert report.totals["lost_on_devices"] == 0


async def _some_unanswered(sim: LivePublisher) -> bool:
    return sim.stats.http_answers[0] >= 5
