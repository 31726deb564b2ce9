"""Errors behind the API reach callers as problem+json with an error id and nothing of
their cause: a real InfluxDB stopped, a real InfluxDB refusing the query, and a registry
table gone (an unexpected exception) — on FastAPI's routes and on ``api.fast``'s. The
cause is in the server log under the same id."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support import running, wait_until

from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import register_fleet, run_api
from wiring.services import InfluxDB, free_port

AIR = DeviceInfo("AQ-P1", "air_quality", "jingansi", 31.2235, 121.4455, "active")
START = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
#: Routes reading InfluxDB: (path, served by api.fast?)
READING = [
    (f"/sensors/{AIR.id}/series?start={START}", True),
    (f"/sensors/{AIR.id}/series.csv?start={START}", True),
    (f"/aggregates?type=air_quality&quantity=pm25&start={START}", True),
    ("/latest?limit=5", True),
    (f"/sensors/{AIR.id}/latest", False),
    (f"/sensors/{AIR.id}/readings?start={START}", False),
    ("/latest?type=air_quality&limit=5&bbox=121.4,31.2,121.5,31.3", False),
    ("/platform/health", False),
    (f"/sensors/{AIR.id}/view", False),
    (f"/devices/{AIR.id}/accounting", False),
    (f"/open/datasets/air_quality_hourly/data?start={START}", True),
]


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[InfluxDB]:
    """An InfluxDB of this test alone, so it can be stopped."""
    service = InfluxDB(
        name="influxd", home=tmp_path / "influxdb", port=free_port(), rpc_port=free_port()
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


def assert_concealed(
    r: httpx.Response, status: int, secrets: list[str], caplog: pytest.LogCaptureFixture
) -> str:
    """The answer is a problem with an error id and none of ``secrets``; the log has the
    id with the cause. Returns the id."""
    for secret in secrets:
        assert secret not in r.text, (r.request.url, secret, r.text)
        assert secret not in str(r.headers)
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    error_id = body["error_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", error_id)
    assert error_id in body["detail"]
    logged = [m.getMessage() for m in caplog.records if error_id in m.getMessage()]
    assert logged, f"error id {error_id} not in the server log"
    return logged[0]


async def test_a_stopped_influxdb_is_not_shown_to_callers(
    settings: Settings,
    own_influxd: InfluxDB,
    viewer_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.model_copy(update={"influx_url": f"http://127.0.0.1:{own_influxd.port}"})
    async with InfluxClient(settings.influx_url, settings.influx_db) as influx:
        await influx.create_database()
        await apply_storage_layout(influx, settings, load_catalogue())
        now = int(datetime.now(UTC).timestamp()) * 10**9
        tags = {"sensor_id": AIR.id, "subdistrict": AIR.subdistrict}
        await influx.write(encode_lines([encode_point(AIR.type, tags, {"pm25": 12.0}, now)]))
    await register_fleet(settings, [AIR])
    caplog.set_level(logging.ERROR, logger="sensornet.api")
    host_port = f"127.0.0.1:{own_influxd.port}"
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=viewer_headers) as http,
    ):
        for path, _ in READING:
            r = await http.get(path)
            assert r.status_code == 200, (path, r.text)
        own_influxd.stop()
        for path, fast in READING:
            r = await http.get(path)
            logged = assert_concealed(
                r, 503, [host_port, str(own_influxd.port), "InfluxDB at", "http://"], caplog
            )
            assert host_port in logged, (path, fast, logged)
            assert r.headers["retry-after"] == "30"


async def test_a_refusing_influxdb_is_not_shown_to_callers(
    settings: Settings, viewer_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The settings' database was never created: InfluxDB answers every query with its
    own error text (``database not found: t_…``)."""
    await register_fleet(settings, [AIR])
    caplog.set_level(logging.ERROR, logger="sensornet.api")
    host_port = settings.influx_url.removeprefix("http://")
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=viewer_headers) as http,
    ):
        for path, fast in READING:
            r = await http.get(path)
            secrets = [host_port, settings.influx_db, "database not found", "InfluxQL"]
            logged = assert_concealed(r, 502, secrets, caplog)
            assert "database not found" in logged, (path, fast, logged)


async def test_an_unexpected_error_is_a_problem_with_an_error_id(
    settings: Settings, viewer_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await register_fleet(settings, [AIR])
    caplog.set_level(logging.ERROR, logger="sensornet.api")
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=viewer_headers) as http,
    ):
        assert (await http.get("/sensors")).status_code == 200  # the key is cached now
        db = sqlite3.connect(settings.state_dir / "registry.db")
        db.execute("DROP TABLE sensors")
        db.commit()
        db.close()
        for path in ("/sensors", f"/sensors/{AIR.id}/series?start={START}"):  # FastAPI, fast

            async def failing(path: str = path) -> httpx.Response | None:
                r = await http.get(path)
                return r if r.status_code == 500 else None

            r = await wait_until(failing, timeout_s=30)  # the registry view may be cached
            assert_concealed(r, 500, ["no such table", "sqlite", "SELECT", "Traceback"], caplog)
    tracebacks = [m for m in caplog.records if m.exc_info is not None]
    assert tracebacks and all("error_id=" in m.getMessage() for m in tracebacks)
