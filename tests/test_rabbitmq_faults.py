"""The scaled shape's fault test (issue 21), on real processes: 3 RabbitMQ nodes (the
session's cluster), 3 ingesters as their own processes (one configuration listing every
node, one on each node), devices publishing readings with ``seq`` over MQTT spread over
the nodes. Mid-stream one ingester and then the node leading the readings queue are
killed with SIGKILL. Every publish a device had acknowledged is stored exactly once, the
queue ends empty, and the messages delivered again are counted per cause: those the
killed ingester held are at most its prefetch; the node's death gives back only what the
consumer whose connection lived on it held (at most its prefetch: its unacknowledged
deliveries, and acks the node had not yet applied), nothing of a consumer elsewhere. So
the bound is the prefetch per consumer lost: the killed ingester, and a survivor only if
its own connection was on the killed node (the first case; in the second, the ingester
on the leader's node is the one killed, and the node's death gives back nothing)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from ingester_process import IngesterProcess
from rabbit_support import consumer_nodes, publish_all, queue_empty, rabbit_settings
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
PER_DEVICE = 500  # K = 15,000 readings
PACE_S = 0.01  # offered faster than 3 ingesters drain here: their windows fill


FIELDS = ("received_messages", "redelivered", "reconnects", "released")


async def reports(
    influx: InfluxClient, ingesters: list[IngesterProcess], since_ns: int, each: bool = False
) -> Any:
    """The ingesters' figures (platform_ingest) from their newest report, once every one
    has reported after ``since_ns``: summed, or by ingester with ``each``."""
    columns = ", ".join(f'last("{f}") AS "{f}"' for f in FIELDS)
    series = await influx.query(
        f'SELECT {columns} FROM "platform_ingest" WHERE time > $t GROUP BY "ingester"',
        {"t": since_ns},
    )
    got = {
        x["tags"]["ingester"]: dict(
            zip(FIELDS, (int(v or 0) for v in x["values"][0][1:]), strict=True)
        )
        for x in series
    }
    if not all(i.client_id in got for i in ingesters):
        return None
    if each:
        return {i.client_id: got[i.client_id] for i in ingesters}
    return {f: sum(got[i.client_id][f] for i in ingesters) for f in FIELDS}


@pytest.mark.parametrize(
    "survivor_on_node", [True, False], ids=["a-survivor-on-the-node", "none-on-the-node"]
)
async def test_kill_an_ingester_and_the_queue_leader_mid_stream(
    settings: Settings, influx: InfluxClient, rabbit_cluster: RabbitCluster, survivor_on_node: bool
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

    # one configuration for all three, every node listed (nobody knows which node will
    # die), differing only by name; the names start them on three different nodes
    env = {
        "SENSORNET_INGEST_INPUTS": "amqp",
        "SENSORNET_AMQP_URLS": ",".join(
            f"amqp://127.0.0.1:{n.ports.amqp}/" for n in rabbit_cluster.nodes
        ),
        "SENSORNET_INGEST_REPORT_INTERVAL_S": "0.5",
        "SENSORNET_INGEST_BATCH_INTERVAL_S": "0.05",
    }
    ingesters = [
        IngesterProcess(s, client_id=f"ingester-{i}-{s.ingest_client_id}", extra_env=env)
        for i in range(3)
    ]
    window = prefetch(s.ingest_batch_size, s.ingest_receive_maximum, s.ingest_writes_in_flight)
    endpoints = rabbit_cluster.mqtt_endpoints()
    leader = rabbit_cluster.leader()
    try:
        async with running(run_broker_auth, s):
            for ingester in ingesters:
                ingester.start()
            nodes = await wait_until(lambda: consumer_nodes(rabbit_cluster, 3), timeout_s=60)
            on_leader = [i for i in ingesters if nodes[i.client_id] == leader.node_name]
            assert len(on_leader) == 1, nodes
            # first case: the ingester killed is not the one on the leader's node, so the
            # node's death closes a survivor's connection too
            killed = next(i for i in ingesters if (i in on_leader) != survivor_on_node)
            survivors = [i for i in ingesters if i is not killed]
            tasks = [
                asyncio.create_task(
                    publish_all(
                        endpoints, i, d.id, creds[d.id], per_device[d.id], window=10, pace_s=PACE_S
                    )
                )
                for i, d in enumerate(fleet)
            ]

            async def some_stored() -> bool:
                return await count_stored(influx, {d.type for d in fleet}) >= k // 4

            await wait_until(some_stored, timeout_s=120, interval_s=0.2)
            killed_ns = time.time_ns()
            killed.kill()
            # cause 1, the killed ingester: its unacknowledged messages return to the head
            # of the queue, so once the survivors have taken two windows more, all of them
            # have been given out again
            base = await wait_until(lambda: reports(influx, survivors, killed_ns + 300_000_000))
            more = base["received_messages"] + 2 * window

            async def taken() -> dict[str, int] | None:
                now = await reports(influx, survivors, killed_ns)
                return now if now and now["received_messages"] >= more else None

            after_ingester = await wait_until(taken, timeout_s=60, interval_s=0.2)
            assert not all(t.done() for t in tasks), "the stream ended before the node died"
            # cause 2, the node (in the first case a survivor consumes on it)
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
            each = await wait_until(lambda: reports(influx, survivors, emptied_ns, each=True))
            # per cause, at most the prefetch of each consumer lost: the killed ingester's...
            by_ingester = after_ingester["redelivered"]
            assert by_ingester <= window, (by_ingester, window)
            # ...and the node's: what the consumer whose connection lived on it held, at
            # least what it had not acknowledged (``released``), at most its prefetch;
            # a consumer whose connection lived elsewhere lost nothing
            by_node = sum(f["redelivered"] for f in each.values()) - by_ingester
            lost = [i for i in survivors if each[i.client_id]["reconnects"] > 0]
            released = sum(each[i.client_id]["released"] for i in lost)
            figures = f"prefetch {window}, by ingester {by_ingester}, by node {by_node}: {each}"
            assert lost == (on_leader if survivor_on_node else []), figures
            assert released <= by_node <= window * len(lost), figures
    finally:
        for ingester in ingesters:
            if ingester.proc is not None and ingester.proc.poll() is None:
                ingester.stop()
        # the session's cluster whole again for the tests after this one
        await asyncio.to_thread(leader.start)
        await asyncio.to_thread(rabbit_cluster.wait_members)
