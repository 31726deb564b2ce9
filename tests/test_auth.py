"""Every endpoint over the real API: no key → 401, too low a role → 403, right role →
through. Keys are created, used and revoked by an admin, and that is audited."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pg_server import BACKENDS, registry_on
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from support import running

from api.app import create_app
from api.key_cache import KeyCache
from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.registry import keys
from sensornet.registry.models import AuditEntry
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import run_api

GATEWAY = {"id": "GW-A1", "subdistrict": "beizhan", "lat": 31.247, "lon": 121.475}
NEW = {"id": "AQ-A1", "type": "air_quality", "subdistrict": "jingansi", "lat": 31.22, "lon": 121.44}

#: (method, path, least role, JSON body). The test checks this covers every route.
ENDPOINTS: list[tuple[str, str, str, Any]] = [
    ("GET", "/sensors/{sensor_id}/latest", "viewer", None),
    ("GET", "/sensors/{sensor_id}/readings?start=2020-01-01T00:00:00Z", "viewer", None),
    ("GET", "/sensors", "viewer", None),
    ("GET", "/sensors/{sensor_id}", "viewer", None),
    ("GET", "/sensors/{sensor_id}/history", "viewer", None),
    ("GET", "/sensors/{sensor_id}/view", "viewer", None),
    ("GET", "/devices/{sensor_id}/accounting", "viewer", None),
    ("GET", "/latest", "viewer", None),
    ("GET", "/sensors/{sensor_id}/series?start=2020-01-01T00:00:00Z", "viewer", None),
    ("GET", "/sensors/{sensor_id}/series.csv?start=2020-01-01T00:00:00Z", "viewer", None),
    (
        "GET",
        "/aggregates?type=air_quality&quantity=pm25&start=2026-11-24T00:00:00Z",
        "viewer",
        None,
    ),
    ("GET", "/platform/health", "viewer", None),
    ("GET", "/alarms", "viewer", None),
    ("GET", "/alarms/history", "viewer", None),
    ("GET", "/alarms/rules", "viewer", None),
    ("POST", "/alarms/{alarm_id}/acknowledge", "engineer", {"note": "on it"}),
    ("POST", "/sensors", "engineer", NEW),
    ("PATCH", "/sensors/{sensor_id}", "engineer", {"firmware": "9"}),
    ("POST", "/sensors/{sensor_id}/move", "engineer", {"lat": 31.23, "lon": 121.45}),
    ("POST", "/sensors/{sensor_id}/status", "engineer", {"status": "installed"}),
    ("POST", "/sensors/{sensor_id}/retire", "engineer", None),
    ("POST", "/sensors/import", "engineer", {"sensors": []}),
    ("POST", "/sensors/import.csv", "engineer", "id,type\n"),
    ("GET", "/sensors/export.csv", "viewer", None),
    ("GET", "/sensors/export.geojson", "viewer", None),
    ("POST", "/sensors/{sensor_id}/credentials", "engineer", None),
    ("DELETE", "/sensors/{sensor_id}/credentials", "engineer", None),
    ("GET", "/gateways", "viewer", None),
    ("GET", "/gateways/{gateway_id}", "viewer", None),
    ("POST", "/gateways", "engineer", GATEWAY),
    ("POST", "/gateways/{gateway_id}/retire", "engineer", None),
    ("GET", "/keys", "admin", None),
    ("POST", "/keys", "admin", {"role": "viewer"}),
    ("DELETE", "/keys/{key_id}", "admin", None),
    ("POST", "/alarms/{alarm_id}/unacknowledge", "engineer", None),
    ("GET", "/maintenance", "viewer", None),
    ("GET", "/maintenance/history", "viewer", None),
    ("POST", "/maintenance", "engineer", None),
    ("POST", "/maintenance/{window_id}/end", "engineer", None),
    ("POST", "/northbound/subscriptions", "admin", None),
    ("GET", "/northbound/subscriptions", "engineer", None),
    ("GET", "/northbound/subscriptions/{subscription_id}", "engineer", None),
    (
        "GET",
        "/northbound/subscriptions/{subscription_id}/accounting"
        "?start=2026-11-24T00:00:00Z&end=2026-11-24T01:00:00Z",
        "engineer",
        None,
    ),
    ("POST", "/northbound/subscriptions/{subscription_id}/pause", "engineer", None),
    ("POST", "/northbound/subscriptions/{subscription_id}/resume", "engineer", None),
    ("DELETE", "/northbound/subscriptions/{subscription_id}", "admin", None),
]
OPEN = {  # health for probes; open data is anonymous by design (rate-limited aggregates)
    ("GET", "/health"),
    ("GET", "/open/datasets"),
    ("GET", "/open/datasets/{dataset_id}"),
    ("GET", "/open/datasets/{dataset_id}/data"),
}
LOWER = {"engineer": "viewer", "admin": "engineer"}


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


def routes() -> set[tuple[str, str]]:
    spec = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}


def test_the_table_covers_every_route() -> None:
    table = {(m, p.split("?")[0]) for m, p, _, _ in ENDPOINTS}
    assert routes() - OPEN == table & routes()
    assert routes() - OPEN <= table


async def test_every_endpoint_checks_key_and_role(
    settings: Settings, api_keys: dict[str, str], influx: InfluxClient
) -> None:
    await apply_storage_layout(influx, settings, load_catalogue())
    present = routes()
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/health")).status_code == 200
        for method, template, role, body in ENDPOINTS:
            if (method, template.split("?")[0]) not in present:
                continue
            path = template.format(
                sensor_id="AQ-A1",
                key_id="nokey",
                gateway_id="GW-A1",
                alarm_id=1,
                window_id=1,
                subscription_id="nosub",
            )
            send: dict[str, Any] = {"content": body} if isinstance(body, str) else {"json": body}
            r = await http.request(method, path, **send)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["content-type"] == "application/problem+json"
            r = await http.request(
                method, path, **send, headers={"Authorization": "Bearer snk_forged"}
            )
            assert r.status_code == 401, (method, path)
            if role in LOWER:
                low = {"X-API-Key": api_keys[LOWER[role]]}
                r = await http.request(method, path, **send, headers=low)
                assert r.status_code == 403, (method, path, r.status_code)
                assert r.json()["title"] == "Forbidden"
            ok = {"Authorization": f"Bearer {api_keys[role]}"}
            r = await http.request(method, path, **send, headers=ok)
            assert r.status_code not in (401, 403), (method, path, r.status_code)
            assert r.status_code < 500, (method, path, r.text)


async def test_admin_creates_and_revokes_keys_audited(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    admin = {"Authorization": f"Bearer {api_keys['admin']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/keys", json={"role": "engineer", "name": "field team"}, headers=admin)
        assert r.status_code == 201
        created = r.json()
        fresh = {"Authorization": f"Bearer {created['key']}"}
        assert (await http.get("/sensors", headers=fresh)).status_code == 200
        listed = (await http.get("/keys", headers=admin)).json()
        assert all("key" not in k or k["key"] is None for k in listed)
        assert (await http.post("/keys", json={"role": "root"}, headers=admin)).status_code == 422
        r = await http.delete(f"/keys/{created['id']}", headers=admin)
        assert r.json()["revoked"] is True
        assert (await http.get("/sensors", headers=fresh)).status_code == 401
        assert (await http.delete("/keys/nokey", headers=admin)).status_code == 404
    async with (
        open_registry(settings.registry_database_url) as engine,
        async_sessionmaker(engine)() as session,
    ):
        query = select(AuditEntry).where(AuditEntry.entity_id == created["id"])
        found = (await session.scalars(query)).all()
    assert [(a.action, a.actor.split("(")[0]) for a in found] == [
        ("create", f"key:{api_keys['admin'].split('_')[1]}"),
        ("revoke", f"key:{api_keys['admin'].split('_')[1]}"),
    ]
    assert created["key"] not in str([(a.before, a.after) for a in found])


async def test_key_cache_remembers_live_keys_briefly(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    viewer = api_keys["viewer"]
    async with open_registry(settings.registry_database_url) as engine:
        cache = KeyCache(engine, ttl_s=0.3)
        found = await cache.principal(viewer)
        assert found is not None and found.role == "viewer"
        assert await cache.principal("snk_forged") is None
        assert await cache.principal("no-prefix") is None
        await keys.revoke_key(engine, found.key_id, "cli:test")  # as `sensornet keys revoke`
        assert await cache.principal(viewer) == found  # remembered: revoked elsewhere
        # The wait is the assertion ("forgotten once ttl_s has passed"), not a guess at
        # how long something takes: the cache ages entries on the monotonic clock, and a
        # sleep lasts at least what it asks for, so a loaded machine cannot break it.
        await asyncio.sleep(0.35)
        assert await cache.principal(viewer) is None  # ...for at most ttl_s
        engineer = api_keys["engineer"]
        who = await cache.principal(engineer)
        assert who is not None
        await keys.revoke_key(engine, who.key_id, "cli:test")
        cache.forget(who.key_id)  # as DELETE /keys/{id} does
        assert await cache.principal(engineer) is None
        uncached = KeyCache(engine, ttl_s=0)
        admin = await uncached.principal(api_keys["admin"])
        assert admin is not None
        await keys.create_key(engine, "admin", "next", "cli:test")  # not the last admin
        await keys.revoke_key(engine, admin.key_id, "cli:test")
        assert await uncached.principal(api_keys["admin"]) is None
