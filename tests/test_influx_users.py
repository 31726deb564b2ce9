"""InfluxDB with authentication on and the users deploy/README.md creates, run statement
for statement from that file on a real influxd: the storage layout needs the admin; the
ingester stores readings as a write-only user; the alarm runner reads and writes as its
own user; the API reads as the read-only user and its InfluxDB client cannot change data."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import FLEET_PASSWORD, INGEST_PASSWORD
from support import running, wait_until

from alarms.runner import AlarmRunner
from sensornet.alarms.rules import load_rules
from sensornet.bulk_publisher import BulkPublisher
from sensornet.catalogue import load_catalogue
from sensornet.errors import InfluxError, InfluxFatalError
from sensornet.influx import InfluxClient, influx_client, rows
from sensornet.registry.keys import create_key
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from wiring.parts import prepare_storage, register_fleet, run_api, run_ingester
from wiring.services import InfluxDB, Mosquitto, ensure_binaries, free_port

README = Path(__file__).parent.parent / "deploy" / "README.md"
AQ = DeviceInfo("AQ-AUTH", "air_quality", "jingansi", 31.22, 121.45, "active")


def readme_statements() -> list[str]:
    """The InfluxQL block that follows the ``influxdb-users`` marker in deploy/README.md."""
    text = README.read_text()
    found = re.search(r"<!-- influxdb-users -->\s*```sql\n(.*?)```", text, re.S)
    assert found, "deploy/README.md lost its influxdb-users block"
    return [line for line in found.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxDB, dict[str, str]]]:
    """A fresh influxd with auth on, its users made by the README's statements; yields the
    service and each user's password."""
    ensure_binaries()
    service = InfluxDB(
        name="influxd-auth",
        home=tmp_path_factory.mktemp("influxdb-auth"),
        port=free_port(),
        rpc_port=free_port(),
        auth_enabled=True,
    )
    service.start()
    passwords: dict[str, str] = {}

    def with_password(statement: str) -> str:
        user = re.search(r"CREATE USER (\w+)", statement)
        if user is None:
            return statement
        passwords[user.group(1)] = secrets.token_urlsafe(12)
        return re.sub(r"'[^']*'", f"'{passwords[user.group(1)]}'", statement)

    url = f"http://127.0.0.1:{service.port}"
    try:
        first, *rest = [with_password(s) for s in readme_statements()]
        # with auth on, InfluxDB takes the first admin without a login, and nothing else
        assert httpx.post(f"{url}/query", data={"q": first}).status_code == 200
        admin = re.search(r"CREATE USER (\w+)", first)
        assert admin is not None
        login = (admin.group(1), passwords[admin.group(1)])
        for statement in rest:
            answer = httpx.post(f"{url}/query", data={"q": statement}, auth=login)
            assert answer.status_code == 200 and "error" not in answer.text, (statement, answer)
        yield service, passwords
    finally:
        service.stop()


def _settings(tmp_path: Path, service: InfluxDB, broker: Mosquitto, **influx: object) -> Settings:
    return Settings(
        state_dir=tmp_path,
        mqtt_port=broker.port,
        mqtt_ingest_password=INGEST_PASSWORD,  # type: ignore[arg-type]
        influx_url=f"http://127.0.0.1:{service.port}",
        influx_db="sensornet",
        ingest_client_id=f"ingester-auth-{time.time_ns()}",
        ingest_batch_interval_s=0.05,
        api_port=free_port(),
        _env_file=None,  # type: ignore[call-arg]
        **influx,  # type: ignore[arg-type]
    )


async def test_each_part_reaches_influxdb_with_only_the_rights_it_needs(
    secured: tuple[InfluxDB, dict[str, str]], broker: Mosquitto, tmp_path: Path
) -> None:
    service, pw = secured
    as_admin = _settings(tmp_path, service, broker, influx_user="sensornet_admin",
                         influx_password=pw["sensornet_admin"])  # fmt: skip
    as_ingester = _settings(tmp_path, service, broker, influx_user="sensornet_ingest",
                            influx_password=pw["sensornet_ingest"])  # fmt: skip
    as_alarms = _settings(tmp_path, service, broker, influx_user="sensornet_alarms",
                          influx_password=pw["sensornet_alarms"])  # fmt: skip
    # the API's environment has the read-only user and nothing else (deploy/)
    as_api = _settings(tmp_path, service, broker, influx_read_user="sensornet_read",
                       influx_read_password=pw["sensornet_read"])  # fmt: skip

    # retention policies need InfluxDB's admin: only the storage layout job has it
    with pytest.raises(InfluxFatalError, match=r"403 .*requires admin privilege"):
        await prepare_storage(as_alarms)
    await prepare_storage(as_admin)

    await register_fleet(as_api, [AQ])
    async with open_registry(as_api.registry_database_url) as registry:
        key = (await create_key(registry, "viewer", "auth-test", "test"))[1]
    now_ms = time.time_ns() // 1_000_000
    topic = f"{as_api.topic_prefix}/{AQ.id}/readings".encode()
    readings = [(topic, orjson.dumps({"ts": now_ms + s, "seq": s, "pm25": 10.0 + s}))
                for s in range(5)]  # fmt: skip
    async with (
        running(run_ingester, as_ingester),  # the write-only user
        running(run_api, as_api),
        influx_client(as_api, read_only=True) as api_influx,
    ):
        publisher = BulkPublisher(
            as_api.mqtt_host, broker.port, "auth-blast", "simulator", FLEET_PASSWORD
        )
        assert await publisher.publish_all(readings) == 5
        base = f"http://{as_api.api_host}:{as_api.api_port}"
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:

            async def all_read() -> list[object]:
                answer = await http.get(f"/sensors/{AQ.id}/readings",
                                        params={"start": "2020-01-01T00:00:00Z"})  # fmt: skip
                got: list[object] = answer.json().get("readings", [])
                return got if len(got) == 5 else []

            stored = await wait_until(all_read, timeout_s=30)
            assert [r["values"]["pm25"]["value"] for r in stored] == [10.0 + s for s in range(5)]  # type: ignore[index]

        # the API's own client reads, and can change nothing: no write, no SELECT INTO,
        # no DELETE, no DROP
        assert rows(await api_influx.query('SELECT count("pm25") FROM "air_quality"'))
        with pytest.raises(InfluxFatalError, match=r"not authorized to write.*READ_USER"):
            await api_influx.write(b"air_quality,sensor_id=X pm25=1 1")
        for statement in (
            'SELECT * INTO "copy" FROM "air_quality"',
            'DELETE FROM "air_quality"',
            'DROP MEASUREMENT "air_quality"',
        ):
            with pytest.raises(InfluxFatalError, match="403"):
                await api_influx.query(statement, method="POST")

    # the ingester's user writes and cannot read
    async with influx_client(as_ingester) as ingest_influx:
        with pytest.raises(InfluxFatalError, match="403"):
            await ingest_influx.query('SELECT count("pm25") FROM "air_quality"')

    # the alarm runner reads the readings and writes the operations view as its own user
    async with (
        influx_client(as_alarms) as alarms_influx,
        open_registry(as_alarms.registry_database_url) as engine,
    ):
        runner = AlarmRunner(alarms_influx, engine, load_catalogue(), load_rules())
        await runner.start()
        await runner.tick()
    async with InfluxClient(as_api.influx_url, "sensornet", username="sensornet_read",
                            password=pw["sensornet_read"]) as reader:  # fmt: skip
        liveness = rows(await reader.query('SELECT "state" FROM "sensor_liveness"'))
    assert [r["state"] for r in liveness] == ["online"]


async def test_without_credentials_nothing_is_read_or_written(
    secured: tuple[InfluxDB, dict[str, str]],
) -> None:
    service, _ = secured
    async with InfluxClient(f"http://127.0.0.1:{service.port}", "sensornet") as anonymous:
        assert await anonymous.ping()  # liveness stays open: compose's health check uses it
        with pytest.raises(InfluxFatalError, match="401"):
            await anonymous.write(b"m f=1 1")
        with pytest.raises(InfluxError, match="401"):
            await anonymous.query("SHOW MEASUREMENTS")
