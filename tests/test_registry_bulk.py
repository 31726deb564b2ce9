"""Bulk import and export over the real API and the CLI: all or nothing, a report per
bad row, idempotent re-runs, dry runs, and exports that import back as no-ops."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest
from pg_server import BACKENDS, registry_on
from support import running
from typer.testing import CliRunner

from cli.main import app
from sensornet.registry.bulk import COLUMNS
from sensornet.settings import Settings
from wiring.parts import run_api

TEMPLATE = Path(__file__).parent.parent / "sensornet/data/sensors_template.csv"


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL."""
    return await registry_on(request.param, settings, postgres)


def rows_csv(n: int, bad: dict[int, dict[str, str]] | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for i in range(n):
        row = {
            "id": f"NS-B{i:05d}",
            "type": "noise",
            "subdistrict": ["jingansi", "beizhan", "daninglu"][i % 3],
            "lat": f"{31.22 + i * 1e-5:.6f}",
            "lon": f"{121.44 + i * 1e-5:.6f}",
            "status": "installed",
            "address": f"{i} Test Road",
            "installed_on": "2026-11-01",
        }
        row.update((bad or {}).get(i, {}))
        writer.writerow(row)
    return out.getvalue()


async def test_import_is_atomic_reports_rows_and_is_idempotent(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}", "Content-Type": "text/csv"}
    bad = {3: {"type": "teapot"}, 7: {"lat": "north"}, 8: {"id": "NS-B00002"}}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/sensors/import.csv", content=rows_csv(10, bad), headers=headers)
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        errors = r.json()["errors"]
        assert [(e["row"], e["sensor_id"], e["field"]) for e in errors] == [
            (4, "NS-B00003", None),
            (8, "NS-B00007", "lat"),
            (9, "NS-B00002", "id"),
        ]
        assert "teapot" in errors[0]["message"]
        listed = (await http.get("/sensors", headers=headers)).json()["items"]
        assert listed == []  # nothing of the good rows went in

        good = rows_csv(10)
        dry = await http.post("/sensors/import.csv?dry_run=true", content=good, headers=headers)
        assert dry.json()["created"] == 10
        assert (await http.get("/sensors", headers=headers)).json()["items"] == []

        first = (await http.post("/sensors/import.csv", content=good, headers=headers)).json()
        assert (first["created"], first["updated"], first["applied"]) == (10, 0, True)
        again = (await http.post("/sensors/import.csv", content=good, headers=headers)).json()
        assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 10)
        history = (await http.get("/sensors/NS-B00001/history", headers=headers)).json()
        assert [h["action"] for h in history] == ["import"]

        changed = rows_csv(10, {1: {"firmware": "2.0", "status": "active"}})
        third = (await http.post("/sensors/import.csv", content=changed, headers=headers)).json()
        assert (third["updated"], third["unchanged"]) == (1, 9)
        back = rows_csv(10, {1: {"status": "planned"}})
        refused = await http.post("/sensors/import.csv", content=back, headers=headers)
        assert refused.status_code == 422
        assert "active to planned" in refused.json()["errors"][0]["message"]

        as_json = {"sensors": [{"id": "NS-B00001", "firmware": "2.1"}]}
        auth = {"Authorization": headers["Authorization"]}
        r = await http.post("/sensors/import", json=as_json, headers=auth)
        assert r.json()["updated"] == 1

        exported = (await http.get("/sensors/export.csv", headers=headers)).text
        assert len(exported.strip().splitlines()) == 11
        r = await http.post("/sensors/import.csv", content=exported, headers=headers)
        assert (r.json()["unchanged"], r.json()["updated"]) == (10, 0)
        geo = (await http.get("/sensors/export.geojson", headers=headers)).json()
        assert geo["type"] == "FeatureCollection"
        one = next(f for f in geo["features"] if f["id"] == "NS-B00001")
        assert one["geometry"]["coordinates"] == [121.44001, 31.22001]
        assert one["properties"]["firmware"] == "2.1"


def test_cli_imports_a_thousand_sensors_and_the_template(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    runner = CliRunner()
    big = tmp_path / "batch.csv"
    big.write_text(rows_csv(1000))

    r = runner.invoke(app, ["registry", "import", str(big), "--dry-run", "--url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["created"] == 1000
    r = runner.invoke(app, ["registry", "import", str(big), "--url", url])
    assert json.loads(r.stdout)["created"] == 1000
    r = runner.invoke(app, ["registry", "import", str(big), "--url", url])
    assert json.loads(r.stdout)["unchanged"] == 1000
    r = runner.invoke(
        app, ["registry", "list", "--subdistrict", "beizhan", "--limit", "500", "--url", url]
    )
    assert len(json.loads(r.output)["items"]) == 333

    r = runner.invoke(app, ["registry", "import", str(TEMPLATE), "--url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["created"] == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "X-1", "type": "noise"}]))
    r = runner.invoke(app, ["registry", "import", str(bad), "--url", url])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["errors"][0]["row"] == 1
