"""API key lifetime over the real API and registry: expiry, last use written in batches,
and refused keys remembered so repeating one costs no registry lookup. SQL statements are
counted with SQLAlchemy's event hook on the real engines (observing, not replacing)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_server import BACKENDS, registry_on
from sqlalchemy import Engine, event, update
from support import running, wait_until
from typer.testing import CliRunner

from api.key_cache import KeyCache
from cli.main import app as cli_app
from sensornet.influx import InfluxClient
from sensornet.registry import keys
from sensornet.registry.models import ApiKey
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.parts import run_api


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


@contextlib.contextmanager
def key_statements() -> Iterator[list[str]]:
    """Every SQL statement on the ``api_keys`` table, by any engine, while open."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "api_keys" in statement:
            seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def selects(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("SELECT")]


def base(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


#: A FastAPI route and one that ``api.fast`` serves: both authenticate the same way.
PATHS = ("/sensors", "/latest?limit=5")


async def test_expired_key_is_refused_saying_so(
    settings: Settings, api_keys: dict[str, str], influx: InfluxClient
) -> None:
    admin = {"Authorization": f"Bearer {api_keys['admin']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base(settings)) as http:
        r = await http.post("/keys", json={"role": "viewer", "expires_in": "1m"}, headers=admin)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["expires_at"] is not None and created["expired"] is False
        lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
            created["created_at"]
        )
        assert lifetime == timedelta(minutes=1)
        bad = await http.post("/keys", json={"role": "viewer", "expires_in": "0d"}, headers=admin)
        assert bad.status_code == 422
        too_long = await http.post("/keys", json={"expires_in": "3651d"}, headers=admin)
        assert too_long.status_code == 422 and "3650" in too_long.json()["detail"]

        secret = created["key"]
        fresh = {"Authorization": f"Bearer {secret}"}
        for path in PATHS:
            assert (await http.get(path, headers=fresh)).status_code == 200, path
        # a minute passes: the row says it is over
        async with open_registry(settings.registry_database_url) as engine, engine.begin() as c:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await c.execute(
                update(ApiKey).where(ApiKey.id == created["id"]).values(expires_at=past)
            )

        async def refused() -> httpx.Response | None:
            r = await http.get("/sensors", headers=fresh)
            return r if r.status_code == 401 else None

        await wait_until(refused, timeout_s=30)  # after the live-key cache's seconds
        for path in PATHS:
            r = await http.get(path, headers=fresh)
            assert r.status_code == 401, path
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"].endswith('error="invalid_token"')
            assert r.json()["title"] == "API key expired"
            assert created["id"] in r.json()["detail"]
            assert secret not in r.text and secret.split("_")[-1] not in r.text
        listed = {k["id"]: k for k in (await http.get("/keys", headers=admin)).json()}
        assert listed[created["id"]]["expired"] is True
        assert listed[created["id"]]["revoked"] is False


async def test_repeating_an_unknown_key_costs_one_lookup(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    unknown = {"Authorization": "Bearer snk_000000000000_" + "x" * 43}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base(settings)) as http:
        with key_statements() as seen:
            for _ in range(25):
                for path in PATHS:
                    r = await http.get(path, headers=unknown)
                    assert r.status_code == 401 and r.json()["title"] == "Invalid API key"
        assert len(selects(seen)) == 1, seen

        # a key created afterwards elsewhere (the CLI, its own engine) works at once
        async with open_registry(settings.registry_database_url) as engine:
            _, later = await keys.create_key(engine, "viewer", "later", "cli:test")
        assert (await http.get("/sensors", headers={"X-API-Key": later})).status_code == 200

        # revoked elsewhere, then repeated: refused, still one lookup per refused-cache time
        admin = {"Authorization": f"Bearer {api_keys['admin']}"}
        listed = (await http.get("/keys", headers=admin)).json()
        viewer_id = next(k["id"] for k in listed if k["name"] == "test-viewer")
        async with open_registry(settings.registry_database_url) as engine:
            await keys.revoke_key(engine, viewer_id, "cli:test")
        viewer = {"Authorization": f"Bearer {api_keys['viewer']}"}

        async def revoked() -> bool:
            return (await http.get("/sensors", headers=viewer)).status_code == 401

        await wait_until(revoked, timeout_s=30)
        with key_statements() as seen:
            for _ in range(20):
                assert (await http.get(PATHS[1], headers=viewer)).status_code == 401
        assert selects(seen) == []


async def test_without_the_refused_cache_every_request_looks_up(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    """The counter above counts what it claims: with the cache off, one lookup each."""
    off = settings.model_copy(update={"api_key_refused_cache_s": 0.0})
    unknown = {"Authorization": "Bearer snk_000000000000_" + "y" * 43}
    async with running(run_api, off), httpx.AsyncClient(base_url=base(off)) as http:
        with key_statements() as seen:
            for _ in range(5):
                assert (await http.get("/sensors", headers=unknown)).status_code == 401
    assert len(selects(seen)) == 5


async def test_last_use_is_written_once_per_period_off_the_request_path(
    settings: Settings, api_keys: dict[str, str], influx: InfluxClient
) -> None:
    viewer = {"Authorization": f"Bearer {api_keys['viewer']}"}
    admin = {"Authorization": f"Bearer {api_keys['admin']}"}
    before = datetime.now(UTC)
    async with running(run_api, settings), httpx.AsyncClient(base_url=base(settings)) as http:
        with key_statements() as seen:
            for _ in range(20):
                for path in PATHS:
                    assert (await http.get(path, headers=viewer)).status_code == 200
        assert [s for s in seen if s.startswith("UPDATE")] == []  # the period is a minute
        listed = {k["name"]: k for k in (await http.get("/keys", headers=admin)).json()}
        assert listed["test-viewer"]["last_used_at"] is None
    # the API has stopped, writing what it noted; a run that serves nothing writes nothing
    with key_statements() as seen:
        async with running(run_api, settings):
            pass
    async with open_registry(settings.registry_database_url) as engine:
        found = {k.name: k for k in await keys.list_keys(engine)}
    used = found["test-viewer"].last_used_at
    assert used is not None and before <= used <= datetime.now(UTC)
    assert found["test-admin"].last_used_at is not None  # it listed the keys
    assert found["test-engineer"].last_used_at is None  # never used
    assert [s for s in seen if s.startswith("UPDATE")] == []  # nothing used: nothing written


async def test_last_use_is_written_while_the_api_runs(
    settings: Settings, api_keys: dict[str, str], influx: InfluxClient
) -> None:
    often = settings.model_copy(update={"api_key_last_used_s": 0.2})
    viewer = {"Authorization": f"Bearer {api_keys['viewer']}"}
    async with (
        running(run_api, often),
        httpx.AsyncClient(base_url=base(often)) as http,
        open_registry(often.registry_database_url) as engine,
    ):
        assert (await http.get(PATHS[1], headers=viewer)).status_code == 200

        async def recorded() -> datetime | None:
            found = {k.name: k for k in await keys.list_keys(engine)}
            return found["test-viewer"].last_used_at

        await wait_until(recorded, timeout_s=30)


def test_cli_creates_expiring_keys_and_lists_their_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORNET_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()

    r = cli.invoke(cli_app, ["keys", "create", "--role", "engineer", "--expires-in", "90d"])
    assert r.exit_code == 0, r.output
    created = json.loads(r.stdout)
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert lifetime == timedelta(days=90)
    r = cli.invoke(cli_app, ["keys", "create", "--expires-in", "soon"])
    assert r.exit_code == 1 and "90d" in r.output
    (listed,) = json.loads(cli.invoke(cli_app, ["keys", "list"]).stdout)
    assert set(listed) == {
        "id",
        "role",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked",
        "expired",
    }
    assert (listed["expires_at"], listed["last_used_at"]) == (created["expires_at"], None)


async def test_the_refused_cache_is_bounded_oldest_out(settings: Settings) -> None:
    async with open_registry(settings.registry_database_url) as engine:
        cache = KeyCache(engine, ttl_s=2.0, refused_ttl_s=60.0, max_entries=3)
        wrong = [f"snk_000000000000_{i:043d}" for i in range(4)]
        with key_statements() as seen:
            for secret in wrong:  # the fourth pushes the first out
                assert await cache.principal(secret) is None
            for secret in wrong[1:]:
                assert await cache.principal(secret) is None
        assert len(selects(seen)) == 4
        with key_statements() as seen:
            assert await cache.principal(wrong[0]) is None
        assert len(selects(seen)) == 1
