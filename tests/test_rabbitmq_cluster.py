"""The scaled shape on a real 3-node RabbitMQ cluster (session fixture ``rabbit_cluster``):
the cluster and its readings queue, device logins answered by the registry, and the
AMQP input storing what devices published over MQTT to any node."""

from __future__ import annotations

import asyncio

import gmqtt
import httpx
from gmqtt.mqtt.constants import MQTTv311
from rabbit_support import publishers, queue_empty, rabbit_settings
from support import TestClient, close_gmqtt, running, wait_until

from gateway_sim.publisher import LivePublisher
from gateway_sim.synthetic import make_readings, messages
from sensornet.accounting import count_stored
from sensornet.broker_auth import issue_credentials, revoke_credentials
from sensornet.broker_files import connack
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient, rows
from sensornet.latest import DEVICE_STATUS
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from sensornet.topics import device_topic, ingest_routing_keys
from wiring.broker_auth_service import run_broker_auth
from wiring.parts import default_fleet, register_fleet, run_api, run_ingester
from wiring.rabbitmq import READINGS_QUEUE, RabbitCluster


def test_three_nodes_and_a_quorum_queue_with_a_member_on_each(
    rabbit_cluster: RabbitCluster,
) -> None:
    nodes = rabbit_cluster.node_status()
    assert [n["running"] for n in nodes] == [True, True, True]
    queue = rabbit_cluster.queue()
    assert queue["type"] == "quorum"
    assert sorted(queue["members"]) == sorted(n.node_name for n in rabbit_cluster.nodes)
    with rabbit_cluster.api() as api:
        bindings = api.get(f"/queues/%2F/{READINGS_QUEUE}/bindings").json()
    keys = {b["routing_key"] for b in bindings if b["source"] == "amq.topic"}
    assert keys == set(ingest_routing_keys("city/v1"))


async def test_devices_log_in_through_the_registry_and_reach_influxdb_over_amqp(
    settings: Settings, influx: InfluxClient, rabbit_cluster: RabbitCluster
) -> None:
    s = rabbit_settings(settings, rabbit_cluster)
    fleet = default_fleet(3)
    await register_fleet(s, fleet)
    async with open_registry(s.registry_database_url) as registry:
        creds = await issue_credentials(registry, [d.id for d in fleet])
    a, b, c = (d.id for d in fleet)
    nodes = rabbit_cluster.mqtt_endpoints()
    async with running(run_broker_auth, s), running(run_ingester, s):
        # the right password on any node; a wrong one, an unknown device: refused
        for _, port in nodes:
            assert await asyncio.to_thread(connack, "127.0.0.1", port, a, creds[a]) == 0
        assert await asyncio.to_thread(connack, "127.0.0.1", nodes[1][1], a, "wrong") in (4, 5)
        assert await asyncio.to_thread(connack, "127.0.0.1", nodes[2][1], "nobody", "x") in (4, 5)
        # TLS listener, certificate checked
        tls = MqttTls(rabbit_cluster.ca)  # type: ignore[attr-defined]
        tls_port = rabbit_cluster.mqtt_endpoints(tls=True)[2][1]
        assert await asyncio.to_thread(connack, "127.0.0.1", tls_port, b, creds[b], 5.0, tls) == 0

        async with publishers(nodes, creds) as devices:
            readings = make_readings(fleet, len(fleet))
            for reading, (topic, payload) in zip(
                make_readings(fleet, len(fleet)), messages(s.topic_prefix, readings, 1), strict=True
            ):
                device = devices[reading.device.id]
                await device.publish(topic.decode(), payload, 1)
                assert await device.puback() == 1
            # a device may not publish as another: RabbitMQ closes its connection
            await devices[a].publish(device_topic(s.topic_prefix, b, "readings"), b"{}", 2)
            assert await devices[a].puback() is None

        async def stored() -> int:
            return await count_stored(influx, {d.type for d in fleet})

        assert await wait_until(lambda: _ge(stored, 3), timeout_s=30)
        await wait_until(lambda: queue_empty(rabbit_cluster), timeout_s=30)

        # revoked: refused at its next connection, no broker reload
        async with open_registry(s.registry_database_url) as registry:
            await revoke_credentials(registry, [c])

        async def refused() -> bool:
            code = await asyncio.to_thread(connack, "127.0.0.1", nodes[0][1], c, creds[c])
            return code in (4, 5)

        await wait_until(refused, timeout_s=5)
        async with httpx.AsyncClient() as http:
            stats = (
                await http.get(f"http://127.0.0.1:{s.broker_auth_port}/broker/auth/stats")
            ).json()
        assert stats["denied"] >= 3 and stats["allowed"] >= 6
        # repeated logins of a device were answered from the cache
        assert stats["device_queries"] <= len(fleet) + 1 < stats["logins"]
    assert await stored() == 3


async def _ge(fn: object, n: int) -> bool:
    return await fn() >= n  # type: ignore[operator, no-any-return]


async def test_last_will_dead_letters_and_platform_health_in_the_scaled_shape(
    settings: Settings,
    influx: InfluxClient,
    rabbit_cluster: RabbitCluster,
    viewer_headers: dict[str, str],
) -> None:
    """Liveness does not rest on retained messages (node-local in RabbitMQ): the Last Will
    goes through the readings queue like a reading and the ingester stores it; a bad
    payload is a dead letter; the platform's health lists every broker node."""
    admin = f"sensornet-admin:{rabbit_cluster.layout.admin_password}"
    s = rabbit_settings(
        settings,
        rabbit_cluster,
        rabbitmq_management_urls=",".join(
            f"http://{admin}@127.0.0.1:{n.ports.http}" for n in rabbit_cluster.nodes
        ),
    )
    fleet = default_fleet(2)
    await register_fleet(s, fleet)
    async with open_registry(s.registry_database_url) as registry:
        creds = await issue_credentials(registry, [d.id for d in fleet])
    a, b = (d.id for d in fleet)
    nodes = rabbit_cluster.mqtt_endpoints()
    async with running(run_broker_auth, s), running(run_ingester, s), running(run_api, s):
        will = gmqtt.Message(
            device_topic(s.topic_prefix, a, "status"), b"offline", qos=1, retain=True
        )
        device = TestClient(f"{a}-will", will_message=will)
        device.client.set_auth_credentials(a, creds[a])
        try:
            await device.client.connect("127.0.0.1", nodes[2][1], version=MQTTv311)
            await device.vanish()  # no DISCONNECT: the node publishes the Will
        finally:
            await close_gmqtt(device.client)

        async def said_offline() -> bool:
            said = {r["sensor_id"]: r["state"] for r in rows(await influx.query(DEVICE_STATUS))}
            return said.get(a) == "offline"

        await wait_until(said_offline, timeout_s=30)

        async with publishers(nodes[1:], {b: creds[b]}) as devices:
            await devices[b].publish(device_topic(s.topic_prefix, b, "readings"), b"{not json", 1)
            assert await devices[b].puback() == 1

        async def dead_lettered() -> bool:
            found = await influx.query(
                'SELECT count("payload_bytes") FROM "dead_letter" WHERE "device" = $id', {"id": b}
            )
            return bool(found) and found[0]["values"][0][1] == 1

        await wait_until(dead_lettered, timeout_s=30)
        await wait_until(lambda: queue_empty(rabbit_cluster), timeout_s=30)
        base = f"http://{s.api_host}:{s.api_port}"
        async with httpx.AsyncClient(base_url=base, headers=viewer_headers) as http:
            health = (await http.get("/platform/health")).json()
        names = sorted(n.node_name for n in rabbit_cluster.nodes)
        assert [n["name"] for n in health["broker_nodes"]] == names
        assert all(n["running"] for n in health["broker_nodes"])
        assert s.ingest_client_id in {i["ingester"] for i in health["ingesters"]}


async def test_the_simulator_spreads_its_devices_over_the_nodes(
    settings: Settings, influx: InfluxClient, rabbit_cluster: RabbitCluster
) -> None:
    endpoints = rabbit_cluster.mqtt_endpoints()
    s = rabbit_settings(
        settings,
        rabbit_cluster,
        mqtt_endpoints=",".join(f"{h}:{p}" for h, p in endpoints),
        mqtt_protocol="3.1.1",
    )
    fleet = [d for d in default_fleet(12) if not d.gateway_id][:6]
    await register_fleet(s, fleet)
    async with open_registry(s.registry_database_url) as registry:
        creds = await issue_credentials(registry, [d.id for d in fleet])

    def created() -> dict[str, int]:
        with rabbit_cluster.api() as api:
            return {
                n["name"]: int(n.get("connection_created", 0)) for n in api.get("/nodes").json()
            }

    before = await asyncio.to_thread(created)
    catalogue = load_catalogue()
    publisher = LivePublisher(
        host=s.mqtt_host,
        port=s.mqtt_port,
        endpoints=s.mqtt_endpoint_list(),
        mqtt311=True,
        username="nobody",
        password="unused",
        topic_prefix=s.topic_prefix,
        fleet=fleet,
        catalogue=catalogue,
        credentials=creds,
        connections=1,
        first_report_within_s=0.2,
        interval_scale=0.2 / max(t.interval_s for t in catalogue.types.values()),
    )
    async with running(run_broker_auth, s), running(run_ingester, s):
        await publisher.run(asyncio.Event(), max_rounds=2)

        async def stored() -> bool:
            return await count_stored(influx, {d.type for d in fleet}) == 2 * len(fleet)

        await wait_until(stored, timeout_s=30)
        await wait_until(lambda: queue_empty(rabbit_cluster), timeout_s=30)

        async def on_every_node() -> bool:  # the management stats lag by a few seconds
            after = await asyncio.to_thread(created)
            return all(after[name] > before.get(name, 0) for name in after)

        await wait_until(on_every_node, timeout_s=30, interval_s=1.0)
