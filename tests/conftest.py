"""Fixtures start the real Mosquitto and InfluxDB on free ports: never mocks.

InfluxDB (slow to start) is shared by the session, each test gets its own database;
Mosquitto (fast) is started per test, so no session or queue leaks between tests.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.services import InfluxDB, Mosquitto, broker_acl, ensure_binaries, free_port

# The product's fixed default ports (ingester and alarm runner /metrics, Alertmanager) are
# for one deployment per machine; tests run many at once, so they are off unless a test
# gives a free port of its own (what a test does not set, the settings' defaults decide).
os.environ.setdefault("SENSORNET_INGEST_METRICS_PORT", "0")
os.environ.setdefault("SENSORNET_ALARM_METRICS_PORT", "0")
os.environ.setdefault("SENSORNET_ALERTMANAGER_URL", "")

INGEST_PASSWORD = "ingest-test-pw"
#: The simulator's fleet identity (it may publish as any device) is test-only: the shipped
#: shapes have none unless a simulator runs (sensornet.broker_auth.fleet_identity). Tests
#: publish through it a lot, so the test broker has it as a static user from the start.
FLEET_PASSWORD = "fleet-test-pw"


def pytest_collection_finish(session: pytest.Session) -> None:
    # A run that collects nothing must fail loudly, never pass as "0 tests".
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests collected")


@pytest.fixture(autouse=True)
async def no_task_left_running(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A test ends with nothing of its own still running on the (session-wide) event loop:
    a client left reconnecting for ever after its broker stopped would hammer a closed
    port, or worse, connect to the next test's broker on a reused one. Torn down last, so
    after the test's own fixtures; a task may take a few seconds to wind down."""
    yield
    current = asyncio.current_task()

    def left() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t is not current and not t.done()]

    if left():
        await asyncio.wait(left(), timeout=10)
    running = left()
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    if running:
        names = ", ".join(sorted(str(t.get_coro()) for t in running))
        pytest.fail(f"{request.node.nodeid} left tasks running: {names}", pytrace=False)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    ensure_binaries()
    service = InfluxDB(
        name="influxd",
        home=tmp_path_factory.mktemp("influxdb"),
        port=free_port(),
        rpc_port=free_port(),
    )
    service.start()
    yield service
    service.stop()


def make_broker(home: Path, port: int | None = None, prefix: str = "city/v1") -> Mosquitto:
    return Mosquitto(
        name="mosquitto",
        home=home,
        port=port or free_port(),
        users={"ingester": INGEST_PASSWORD, "simulator": FLEET_PASSWORD},
        acl=broker_acl(prefix, "ingester", "simulator"),
        autosave_interval_s=1,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    service = make_broker(tmp_path / "mosquitto")
    service.start()
    yield service
    service.stop()


@pytest.fixture
def settings(tmp_path: Path, influxd: InfluxDB, broker: Mosquitto) -> Settings:
    return Settings(
        state_dir=tmp_path,
        mqtt_port=broker.port,
        mqtt_ingest_password=INGEST_PASSWORD,  # type: ignore[arg-type]
        mqtt_fleet_password=FLEET_PASSWORD,  # type: ignore[arg-type]
        influx_url=f"http://127.0.0.1:{influxd.port}",
        influx_db=f"t_{uuid.uuid4().hex[:12]}",
        ingest_client_id=f"ingester-{uuid.uuid4().hex[:6]}",
        ingest_batch_interval_s=0.05,
        api_port=free_port(),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def influx(settings: Settings) -> AsyncIterator[InfluxClient]:
    async with InfluxClient(settings.influx_url, settings.influx_db) as client:
        await client.create_database()
        yield client
        await client.drop_database(settings.influx_db)


@pytest.fixture
async def api_keys(settings: Settings) -> dict[str, str]:
    """One API key per role, created in the test's registry: {"viewer": key, ...}."""
    from sensornet.registry.keys import create_key
    from sensornet.registry.store import open_registry

    async with open_registry(settings.registry_database_url) as registry:
        return {
            role: (await create_key(registry, role, f"test-{role}", "test"))[1]
            for role in ("viewer", "engineer", "admin")
        }


@pytest.fixture
def viewer_headers(api_keys: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys['viewer']}"}


@pytest.fixture
def engineer_headers(api_keys: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys['engineer']}"}


@pytest.fixture(scope="session")
def postgres() -> Iterator[str | None]:
    """``host:port`` of a real PostgreSQL for the whole session, or None if unavailable."""
    from pg_server import postgres_server

    with postgres_server() as address:
        yield address


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A 3-node RabbitMQ cluster for the whole session (its start takes ~30 s): the
    scaled shape (wiring.rabbitmq). Devices log in through the platform's endpoint on
    ``cluster.auth_port``, which a test serves with its own registry
    (``rabbit_support.rabbit_settings``); MQTT over TLS with a throwaway CA
    (``cluster.ca``). A test leaves the readings queue empty."""
    import trustme

    from wiring.rabbitmq import RabbitCluster

    home = tmp_path_factory.mktemp("rabbitmq")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(home / "server.pem"))
    cert.private_key_pem.write_to_path(str(home / "server.key"))
    ca.cert_pem.write_to_path(str(home / "ca.pem"))
    auth_port = free_port()
    cluster = RabbitCluster(
        home / "cluster",
        3,
        auth_url=f"http://127.0.0.1:{auth_port}/broker/auth",
        tls=(home / "server.pem", home / "server.key"),
    )
    cluster.auth_port = auth_port  # type: ignore[attr-defined]
    cluster.ca = home / "ca.pem"  # type: ignore[attr-defined]
    try:
        cluster.start()
        cluster.declare_readings("city/v1", "ingester", INGEST_PASSWORD)
        yield cluster
    finally:
        cluster.stop()
