"""The scaled shape's fault test (issue 21), on real processes: 3 RabbitMQ nodes (the
session's cluster), 3 ingesters as their own processes, devices publishing readings with
``seq`` over MQTT spread over the nodes. Mid-stream one ingester and the node leading the
readings queue are killed with SIGKILL. Every publish a device had acknowledged is stored
exactly once, the queue ends empty, and the messages delivered again are at most the
killed ingester's prefetch."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from ingester_process import IngesterProcess
from rabbit_support import publish_all, queue_empty, rabbit_settings
from support import running, wait_until

from gateway_sim.synthetic import make_readings, messages
from ingest.inputs.amqp import prefetch
from sensornet.accounting import Window, count_stored, device_account
from sensornet.broker_auth import issue_credentials
from sensornet.influx import InfluxClient
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.broker_auth_service import run_broker_auth
from wiring.parts import default_fleet, register_fleet
from wiring.rabbitmq import RabbitCluster

pytestmark = pytest.mark.timeout(300)

DEVICES = 30
PER_DEVICE = 200  # K = 6,000 readings


async def test_kill_an_ingester_and_the_queue_leader_mid_stream(
    settings: Settings, influx: InfluxClient, rabbit_cluster: RabbitCluster
) -> None:
    s = rabbit_settings(
        settings,
        rabbit_cluster,
        ingest_batch_size=250,
        ingest_receive_maximum=1000,
        ingest_report_interval_s=0.5,
    )
    fleet = default_fleet(DEVICES)
    await register_fleet(s, fleet)
    async with open_registry(s.registry_database_url) as registry:
        creds = await issue_credentials(registry, [d.id for d in fleet])
    k = DEVICES * PER_DEVICE
    epoch = int(time.time() * 1000) // 600_000 * 600_000 - 600_000
    readings = [dataclasses.replace(r, ts_ms=epoch + r.seq * 100) for r in make_readings(fleet, k)]
    per_device: dict[str, list[tuple[str, bytes]]] = {d.id: [] for d in fleet}
    for reading, (topic, payload) in zip(
        readings, messages(s.topic_prefix, iter(readings), 1), strict=True
    ):
        per_device[reading.device.id].append((topic.decode(), payload))

    leader = rabbit_cluster.leader()
    survivors = [n for n in rabbit_cluster.nodes if n is not leader]
    # the ingesters share one configuration (the surviving nodes: consumers on the node
    # that dies would give back their own unacknowledged messages too) and differ by name
    env = {
        "SENSORNET_INGEST_INPUTS": "amqp",
        "SENSORNET_AMQP_URLS": ",".join(f"amqp://127.0.0.1:{n.ports.amqp}/" for n in survivors),
        "SENSORNET_INGEST_REPORT_INTERVAL_S": "0.5",
        "SENSORNET_INGEST_BATCH_INTERVAL_S": "0.05",
    }
    ingesters = [
        IngesterProcess(s, client_id=f"ingester-{i}-{s.ingest_client_id}", extra_env=env)
        for i in range(3)
    ]
    endpoints = rabbit_cluster.mqtt_endpoints()
    try:
        async with running(run_broker_auth, s):
            for ingester in ingesters:
                ingester.start()
            tasks = [
                asyncio.create_task(
                    publish_all(endpoints, i, d.id, creds[d.id], per_device[d.id], window=10)
                )
                for i, d in enumerate(fleet)
            ]

            async def some_stored() -> bool:
                return await count_stored(influx, {d.type for d in fleet}) >= k // 4

            await wait_until(some_stored, timeout_s=120, interval_s=0.2)
            ingesters[0].kill()
            await asyncio.to_thread(leader.kill)
            acked = await asyncio.gather(*tasks)
            assert sum(len(a) for a in acked) == k  # every publish acknowledged in the end

            types = {d.type for d in fleet}
            seen: list[int] = []

            async def all_stored() -> bool:
                seen.append(await count_stored(influx, types))
                return seen[-1] >= k

            try:
                await wait_until(all_stored, timeout_s=120, interval_s=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{seen[-1]} of {k} readings stored") from exc
            assert seen[-1] == k
            for device in fleet:  # exactly once per reading, per device
                account = await device_account(
                    influx, device.id, device.type, Window.recent(3600, 60)
                )
                assert (account.missing, account.rejected_total) == (0, 0), account
                assert account.stored == account.seqs.distinct == PER_DEVICE, account
            await wait_until(lambda: queue_empty(rabbit_cluster), timeout_s=60, interval_s=0.5)
            emptied_ns = time.time_ns()

            async def reports() -> dict[str, dict[str, int]] | None:
                """Each survivor's figures, once it reported after the queue emptied."""
                series = await influx.query(
                    'SELECT last("redelivered") AS "redelivered", last("reconnects") AS '
                    '"reconnects" FROM "platform_ingest" WHERE time > $t GROUP BY "ingester"',
                    {"t": emptied_ns},
                )
                got = {
                    x["tags"]["ingester"]: {
                        "redelivered": int(x["values"][0][1] or 0),
                        "reconnects": int(x["values"][0][2] or 0),
                    }
                    for x in series
                }
                return got if all(i.client_id in got for i in ingesters[1:]) else None

            figures = await wait_until(reports, timeout_s=20)
            again = sum(f["redelivered"] for f in figures.values())
            window = prefetch(
                s.ingest_batch_size, s.ingest_receive_maximum, s.ingest_writes_in_flight
            )
            # the killed ingester's window, and the window of any survivor whose own
            # connection the failover closed (it reconnects; none did in the runs measured)
            bound = window * (1 + sum(f["reconnects"] for f in figures.values()))
            assert again <= bound, f"{again} delivered again, prefetch {window}: {figures}"
    finally:
        for ingester in ingesters:
            if ingester.proc is not None and ingester.proc.poll() is None:
                ingester.stop()
        # the session's cluster whole again for the tests after this one
        await asyncio.to_thread(leader.start)
        await asyncio.to_thread(rabbit_cluster.wait_members)
