"""The registry over the real API: lifecycle, audit, filters, cursor pagination, and a
retired sensor's readings refused by the real ingester."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pg_server import BACKENDS, registry_on
from support import mqtt_client, running, wait_until

from sensornet.influx import InfluxClient, rows
from sensornet.settings import Settings
from wiring.parts import run_api, run_ingester


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


def sensor(sensor_id: str, **over: Any) -> dict[str, Any]:
    base = {
        "id": sensor_id,
        "type": "air_quality",
        "subdistrict": "jingansi",
        "lat": 31.2235,
        "lon": 121.4455,
        "address": "1 Huashan Road",
        "mounting": "pole",
    }
    return {**base, **over}


def client(settings: Settings, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://{settings.api_host}:{settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
    )


async def test_sensor_lifecycle_is_enforced_and_audited(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    async with running(run_api, settings), client(settings, api_keys["engineer"]) as http:
        r = await http.post("/sensors", json=sensor("AQ-T1"))
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "planned"
        assert r.json()["has_credentials"] is True
        again = await http.post("/sensors", json=sensor("AQ-T1"))
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"

        bad = await http.post("/sensors", json=sensor("AQ-T2", type="no_such_type"))
        assert bad.status_code == 422
        assert "no_such_type" in bad.json()["detail"]

        skip = await http.post("/sensors/AQ-T1/status", json={"status": "active"})
        assert skip.status_code == 409
        assert "planned to active" in skip.json()["detail"]
        for step in ("installed", "active", "maintenance", "active"):
            r = await http.post("/sensors/AQ-T1/status", json={"status": step})
            assert r.status_code == 200, r.text
            assert r.json()["status"] == step

        r = await http.patch(
            "/sensors/AQ-T1", json={"firmware": "2.1.0", "owner_department": "EPB"}
        )
        assert r.json()["firmware"] == "2.1.0"
        r = await http.post(
            "/sensors/AQ-T1/move", json={"lat": 31.25, "lon": 121.46, "subdistrict": "beizhan"}
        )
        assert (r.json()["lat"], r.json()["subdistrict"]) == (31.25, "beizhan")
        bad_move = await http.post(
            "/sensors/AQ-T1/move", json={"lat": 31.2, "lon": 121.4, "subdistrict": "atlantis"}
        )
        assert bad_move.status_code == 422

        r = await http.post("/sensors/AQ-T1/retire")
        assert r.json()["status"] == "retired"
        back = await http.post("/sensors/AQ-T1/status", json={"status": "active"})
        assert back.status_code == 409
        frozen = await http.patch("/sensors/AQ-T1", json={"firmware": "3"})
        assert frozen.status_code == 422

        history = (await http.get("/sensors/AQ-T1/history")).json()
        actions = [h["action"] for h in reversed(history)]
        assert actions == [
            "register",
            "issue_credentials",
            "status",
            "status",
            "status",
            "status",
            "update",
            "move",
            "status",
        ]
        assert all(h["actor"].startswith("key:") and "test-engineer" in h["actor"] for h in history)
        move = next(h for h in history if h["action"] == "move")
        assert (move["before"]["subdistrict"], move["after"]["subdistrict"]) == (
            "jingansi",
            "beizhan",
        )
        assert (await http.get("/sensors/nope")).status_code == 404


async def test_filters_and_cursor_pagination(settings: Settings, api_keys: dict[str, str]) -> None:
    specs = [sensor(f"AQ-P{i:02d}", lat=31.22 + i * 0.005) for i in range(7)]
    specs += [
        sensor("NS-P01", type="noise", subdistrict="beizhan", address="North station square"),
        sensor("NS-P02", type="noise", subdistrict="beizhan", status="installed"),
    ]
    async with running(run_api, settings), client(settings, api_keys["engineer"]) as http:
        for spec in specs:
            assert (await http.post("/sensors", json=spec)).status_code == 201

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/sensors", params=params)).json()
            seen += [s["id"] for s in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(s["id"] for s in specs)
        assert pages == 3

        async def ids(**params: Any) -> list[str]:
            r = await http.get("/sensors", params=params)
            assert r.status_code == 200, r.text
            return [s["id"] for s in r.json()["items"]]

        assert await ids(type="noise") == ["NS-P01", "NS-P02"]
        assert await ids(subdistrict="beizhan", status="installed") == ["NS-P02"]
        assert await ids(q="north STATION") == ["NS-P01"]
        assert await ids(bbox="121.4,31.229,121.5,31.241") == ["AQ-P02", "AQ-P03", "AQ-P04"]
        assert (await http.get("/sensors", params={"bbox": "1,2,3"})).status_code == 422
        assert (await http.get("/sensors", params={"cursor": "%%%"})).status_code == 422


async def test_retired_sensor_readings_are_refused(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    p = settings.topic_prefix
    async with (
        running(run_api, settings),
        running(run_ingester, settings),
        client(settings, api_keys["engineer"]) as http,
    ):
        assert (await http.post("/sensors", json=sensor("AQ-R1", status="active"))).is_success
        assert (await http.post("/sensors/AQ-R1/retire")).is_success
        password = settings.fleet_password()
        async with mqtt_client("retired-test", settings.mqtt_port, "simulator", password) as mqtt:

            async def refused() -> list[dict[str, Any]]:
                # re-publish until the ingester's registry cache (TTL) has seen the
                # retirement; a refusal shows in a later poll
                mqtt.publish(f"{p}/AQ-R1/readings", b'{"pm25": 12.0}')
                found = rows(await influx.query('SELECT * FROM "dead_letter"'))
                return found if any(r["reason"] == "sensor_retired" for r in found) else []

            letters = await wait_until(refused, interval_s=0.25)
    # before the cache (TTL) sees the new sensor it is unknown; never is it stored
    assert {r["reason"] for r in letters} <= {"sensor_retired", "unknown_sensor"}
    assert rows(await influx.query('SELECT * FROM "air_quality"')) == []
