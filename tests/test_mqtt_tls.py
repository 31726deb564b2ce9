"""MQTT over TLS on a real Mosquitto whose TLS listener has a certificate from a throwaway
CA (``trustme``): the ingester, the simulator (live and load modes), ``BulkPublisher`` and the
API's health check connect with TLS when ``SENSORNET_MQTT_TLS`` is on and verify the
broker; a client that does not trust it is refused with an error that says what to fix;
the broker's plain listener keeps working for local clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
from conftest import FLEET_PASSWORD, INGEST_PASSWORD, make_broker
from pydantic import ValidationError
from support import running, wait_until

from gateway_sim.device_connection import DeviceConnection
from gateway_sim.load import LoadPlan, run_load
from gateway_sim.publisher import LivePublisher
from gateway_sim.report import stored_counts
from ingest.inputs.mqtt import MqttSource
from sensornet.bulk_publisher import BulkPublisher
from sensornet.catalogue import load_catalogue
from sensornet.errors import ConfigError, MqttTlsError
from sensornet.influx import InfluxClient
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_api, run_ingester
from wiring.services import InfluxDB, Mosquitto, free_port


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the CA that signed the broker's certificate
    chain: Path  # the broker's certificate chain, issued for 127.0.0.1 only
    key: Path
    client: Path  # a client certificate and its key, from the same CA
    other_ca_file: Path  # a CA that signed nothing here


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("mqtt-pki")
    ca, other = trustme.CA(), trustme.CA()
    broker_cert = ca.issue_cert("127.0.0.1")
    pki = Pki(home / "ca.pem", home / "chain.pem", home / "key.pem", home / "client.pem",
              home / "other-ca.pem")  # fmt: skip
    ca.cert_pem.write_to_path(str(pki.ca_file))
    other.cert_pem.write_to_path(str(pki.other_ca_file))
    pki.chain.write_bytes(b"".join(blob.bytes() for blob in broker_cert.cert_chain_pems))
    broker_cert.private_key_pem.write_to_path(str(pki.key))
    ca.issue_cert("ingester").private_key_and_cert_chain_pem.write_to_path(str(pki.client))
    return pki


def tls_broker_at(home: Path, pki: Pki, client_ca: Path | None = None) -> Mosquitto:
    broker = make_broker(home)
    broker.tls, broker.tls_port, broker.tls_client_ca = (pki.chain, pki.key), free_port(), client_ca
    return broker


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    service = tls_broker_at(tmp_path / "mosquitto", pki)
    service.start()
    yield service
    service.stop()


@pytest.fixture
def tls_settings(tmp_path: Path, influxd: InfluxDB, tls_broker: Mosquitto, pki: Pki) -> Settings:
    return Settings(
        state_dir=tmp_path,
        mqtt_port=tls_broker.tls_port,
        mqtt_tls=True,
        mqtt_ca_file=pki.ca_file,
        mqtt_ingest_password=INGEST_PASSWORD,  # type: ignore[arg-type]
        mqtt_fleet_password=FLEET_PASSWORD,  # type: ignore[arg-type]
        influx_url=f"http://127.0.0.1:{influxd.port}",
        influx_db=f"tls_{time.time_ns()}",
        ingest_client_id=f"ingester-tls-{time.time_ns()}",
        ingest_batch_interval_s=0.05,
        api_port=free_port(),
        _env_file=None,  # type: ignore[call-arg]
    )


def _readings(settings: Settings, sensor: str, seqs: range) -> list[tuple[bytes, bytes]]:
    topic = f"{settings.topic_prefix}/{sensor}/readings".encode()
    now_ms = time.time_ns() // 1_000_000
    return [(topic, orjson.dumps({"ts": now_ms + s, "seq": s, "pm25": 10.0})) for s in seqs]


def _bulk(settings: Settings, port: int, tls: MqttTls | None) -> BulkPublisher:
    return BulkPublisher(
        settings.mqtt_host, port, f"bulk-{port}", "simulator", FLEET_PASSWORD, tls=tls
    )


async def test_ingester_stores_what_live_simulator_and_bulk_publisher_send_over_tls(
    tls_settings: Settings, tls_broker: Mosquitto
) -> None:
    settings, tls = tls_settings, MqttTls.from_settings(tls_settings)
    assert tls is not None
    catalogue = load_catalogue()
    fleet = default_fleet(3)
    bulk_sensor = DeviceInfo("AQ-TLS", "air_quality", "jingansi", 31.22, 121.45, "active")
    await register_fleet(settings, [*fleet, bulk_sensor])
    publisher = LivePublisher(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=FLEET_PASSWORD,
        topic_prefix=settings.topic_prefix,
        fleet=fleet,
        catalogue=catalogue,
        first_report_within_s=0.3,
        keep_log=True,
        interval_scale=0.2 / max(t.interval_s for t in catalogue.types.values()),
        tls=tls,
    )
    start_ns = time.time_ns() - 10**9
    types = {d.id: d.type for d in [*fleet, bulk_sensor]}
    async with (
        InfluxClient(settings.influx_url, settings.influx_db) as influx,
        running(run_ingester, settings),
        running(run_api, settings),
    ):
        await influx.create_database()
        await publisher.run(asyncio.Event(), max_rounds=2)
        assert (
            await _bulk(settings, tls_broker.tls_port, tls).publish_all(
                _readings(settings, bulk_sensor.id, range(5))
            )
            == 5
        )
        # the same broker's plain listener still serves local clients
        assert (
            await _bulk(settings, tls_broker.port, None).publish_all(
                _readings(settings, bulk_sensor.id, range(5, 8))
            )
            == 3
        )
        want = {d.id: 2 for d in fleet} | {bulk_sensor.id: 8}

        async def all_stored() -> bool:
            return dict(await stored_counts(influx, types, catalogue, start_ns)) == want

        await wait_until(all_stored, timeout_s=30)
        base = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            health = (await http.get("/health")).json()
        assert health == {
            "status": "ok",
            "broker": True,
            "influxdb": True,
            "registry": True,
            "down": [],
        }
        await influx.drop_database(settings.influx_db)


async def test_load_mode_workers_connect_over_tls(tls_settings: Settings) -> None:
    """The plan crosses into spawned worker processes: each makes its own TLS context."""
    settings = tls_settings
    fleet = default_fleet(6)
    await register_fleet(settings, fleet)
    plan = LoadPlan(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username="simulator",
        password=FLEET_PASSWORD,
        prefix=settings.topic_prefix,
        rate=200,
        duration_s=1.0,
        connections=2,
        max_in_flight=20,
        tls=MqttTls.from_settings(settings),
    )
    start_ns = time.time_ns() - 10**9
    async with (
        InfluxClient(settings.influx_url, settings.influx_db) as influx,
        running(run_ingester, settings),
    ):
        await influx.create_database()
        results, _ = await asyncio.to_thread(run_load, plan, fleet, 1)
        sent = sum(r.sent for r in results)
        assert sent > 0 and sum(r.acked for r in results) == sent
        types = {d.id: d.type for d in fleet}

        async def all_stored() -> bool:
            counts = await stored_counts(influx, types, load_catalogue(), start_ns)
            return sum(counts.values()) == sent

        await wait_until(all_stored, timeout_s=30)
        await influx.drop_database(settings.influx_db)


async def test_a_client_that_does_not_trust_the_broker_is_refused_clearly(
    tls_settings: Settings, tls_broker: Mosquitto, pki: Pki
) -> None:
    settings, port = tls_settings, tls_broker.tls_port
    system_only = MqttTls()  # the system's CAs do not know the throwaway CA
    untrusted = "not signed by a CA the system trusts .*SENSORNET_MQTT_CA_FILE"
    with pytest.raises(MqttTlsError, match=f"127.0.0.1:{port} failed: .*{untrusted}"):
        await _bulk(settings, port, system_only).publish_all(_readings(settings, "X", range(1)))
    source = MqttSource(
        host=settings.mqtt_host,
        port=port,
        client_id="untrusting",
        username="ingester",
        password=INGEST_PASSWORD,
        topic_filters=["city/v1/+/readings"],
        on_messages=lambda messages, size: None,
        session_expiry_s=60,
        receive_maximum=100,
        tls=system_only,
    )
    with pytest.raises(MqttTlsError, match=untrusted):
        async with source:
            pass
    link = DeviceConnection("untrusting-link", "simulator", FLEET_PASSWORD, settings.topic_prefix,
                tls=system_only)  # fmt: skip
    with pytest.raises(MqttTlsError, match=untrusted):
        await link.connect(settings.mqtt_host, port, attempts=3)
    # the wrong CA file is named, and so is a host name the certificate does not carry
    wrong = MqttTls(pki.other_ca_file)
    with pytest.raises(MqttTlsError, match=f"CA in SENSORNET_MQTT_CA_FILE={pki.other_ca_file}"):
        await _bulk(settings, port, wrong).publish_all(_readings(settings, "X", range(1)))
    by_name = BulkPublisher("localhost", port, "by-name", "simulator", FLEET_PASSWORD,
                      tls=MqttTls(pki.ca_file))  # fmt: skip
    with pytest.raises(MqttTlsError, match="not issued for 'localhost': set SENSORNET_MQTT_HOST"):
        await by_name.publish_all(_readings(settings, "X", range(1)))
    # the ingester stops at start-up with that error rather than running unconnected
    unconfigured = settings.model_copy(update={"mqtt_ca_file": None})
    with pytest.raises(MqttTlsError, match=untrusted):
        async with running(run_ingester, unconfigured):
            pass
    # and the API's health check does not count a broker our clients would refuse
    async with running(run_api, unconfigured):
        base = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/health")
            assert answer.status_code == 503
            assert answer.json()["broker"] is False
            assert answer.json()["down"] == ["broker"]


async def test_tls_on_the_plain_port_is_told_to_check_the_port(
    tls_settings: Settings, tls_broker: Mosquitto
) -> None:
    tls = MqttTls.from_settings(tls_settings)
    with pytest.raises(MqttTlsError, match=f"is {tls_broker.port} the broker's TLS listener"):
        await _bulk(tls_settings, tls_broker.port, tls).publish_all(
            _readings(tls_settings, "X", range(1))
        )


async def test_a_broker_requiring_client_certificates(
    tmp_path: Path, pki: Pki, tls_settings: Settings
) -> None:
    broker = tls_broker_at(tmp_path / "mosquitto-mtls", pki, client_ca=pki.ca_file)
    broker.start()
    try:
        with_cert = MqttTls(pki.ca_file, pki.client)
        messages = _readings(tls_settings, "X", range(2))
        assert await _bulk(tls_settings, broker.tls_port, with_cert).publish_all(messages) == 2
        with pytest.raises(MqttTlsError, match=r"client certificate \(SENSORNET_MQTT_CERT_FILE\)"):
            await _bulk(tls_settings, broker.tls_port, MqttTls(pki.ca_file)).publish_all(messages)
    finally:
        broker.stop()


def test_tls_settings_refuse_what_would_silently_go_plain(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SENSORNET_MQTT_CA_FILE set but SENSORNET_MQTT_TLS"):
        Settings(mqtt_ca_file=tmp_path / "ca.pem", _env_file=None)  # type: ignore[call-arg]
    settings = Settings(mqtt_tls=True, _env_file=None)  # type: ignore[call-arg]
    assert MqttTls.from_settings(settings) == MqttTls()
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    with pytest.raises(ConfigError, match=f"SENSORNET_MQTT_CA_FILE={not_pem}: cannot load"):
        MqttTls(not_pem).context()
