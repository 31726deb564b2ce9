"""LoRaWAN sensors are registered by DevEUI: normalised to 16 upper-case hex digits,
unique across the registry, through the API, the CLI and bulk import, and found by the
ingester's DeviceCache. Runs on SQLite and a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_server import BACKENDS, registry_on
from support import running
from typer.testing import CliRunner

from cli.main import app
from sensornet.deveui import InvalidDevEui, dev_eui_or_none, normalise_dev_eui
from sensornet.registry.bulk import COLUMNS
from sensornet.registry.store import DeviceCache, open_registry
from sensornet.settings import Settings
from wiring.parts import run_api


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("70b3d57ed005b89a", "70B3D57ED005B89A"),
        ("70-B3-D5-7E-D0-05-B8-9A", "70B3D57ED005B89A"),
        ("70:b3:d5:7e:d0:05:b8:9a", "70B3D57ED005B89A"),
        (" 0004 A30B 001C 0530 ", "0004A30B001C0530"),
        ("0x0101010101010101", "0101010101010101"),
    ],
)
def test_spellings_normalise(given: str, canonical: str) -> None:
    assert normalise_dev_eui(given) == canonical


@pytest.mark.parametrize("bad", ["", "70B3D57ED005B89", "70B3D57ED005B89A00", "70B3D57ED005B89G",
                                 "AgICAgICAgI=", "70B3D57E/D005B89A"])  # fmt: skip
def test_non_euis_are_refused(bad: str) -> None:
    with pytest.raises(InvalidDevEui):
        normalise_dev_eui(bad)
    assert dev_eui_or_none(bad) is None


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, settings: Settings, postgres: str | None
) -> Settings:
    return await registry_on(request.param, settings, postgres)


def lora(sensor_id: str, dev_eui: str | None, **over: Any) -> dict[str, Any]:
    base = {"id": sensor_id, "type": "waterlogging", "subdistrict": "beizhan",
            "lat": 31.2471, "lon": 121.4752, "status": "installed", "dev_eui": dev_eui}  # fmt: skip
    return {**base, **over}


async def test_api_registers_finds_and_keeps_dev_euis_unique(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        r = await h.post("/sensors", json=lora("WL-L1", "70-b3-d5-7e-d0-05-b8-9a"))
        assert r.status_code == 201, r.text
        assert r.json()["dev_eui"] == "70B3D57ED005B89A"
        clash = await h.post("/sensors", json=lora("WL-L2", "70B3D57ED005B89A"))
        assert clash.status_code == 409, clash.text
        assert "WL-L1" in clash.json()["detail"]
        bad = await h.post("/sensors", json=lora("WL-L3", "not-an-eui"))
        assert bad.status_code == 422
        assert (await h.post("/sensors", json=lora("WL-L2", None))).status_code == 201
        assert (await h.post("/sensors", json=lora("WL-L4", ""))).json()["dev_eui"] is None
        taken = await h.patch("/sensors/WL-L2", json={"dev_eui": "70b3d57ed005b89a"})
        assert taken.status_code == 409
        ok = await h.patch("/sensors/WL-L2", json={"dev_eui": "0004A30B001C0530"})
        assert ok.status_code == 200 and ok.json()["dev_eui"] == "0004A30B001C0530"
        found = await h.get("/sensors", params={"dev_eui": "00:04:a3:0b:00:1c:05:30"})
        assert [s["id"] for s in found.json()["items"]] == ["WL-L2"]
        assert (await h.get("/sensors", params={"dev_eui": "xyz"})).status_code == 422
        history = await h.get("/sensors/WL-L2/history")
        assert history.json()[0]["after"]["dev_eui"] == "0004A30B001C0530"

    async with open_registry(settings.registry_database_url) as engine:
        cache = DeviceCache(engine)
        await cache.refresh(force=True)
        one = cache.by_dev_eui("70B3D57ED005B89A")
        assert one is not None and one.id == "WL-L1"
        two = cache.by_dev_eui("0004A30B001C0530")
        assert two is not None and two.id == "WL-L2"
        assert cache.by_dev_eui("0101010101010101") is None


def sheet(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def row(i: int, dev_eui: str) -> dict[str, str]:
    place = {"subdistrict": "beizhan", "lat": "31.2471", "lon": "121.4752"}
    return {"id": f"WL-B{i}", "type": "waterlogging", **place, "status": "installed",
            "dev_eui": dev_eui}  # fmt: skip


async def test_bulk_import_column_checks_uniqueness(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}", "Content-Type": "text/csv"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        twice = sheet([row(1, "0101010101010101"), row(2, "01-01-01-01-01-01-01-01"),
                       row(3, "bogus")])  # fmt: skip
        r = await h.post("/sensors/import.csv", content=twice)
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert [(e["row"], e["field"]) for e in errors] == [(2, "dev_eui"), (3, "dev_eui")]
        assert "row 1" in errors[0]["message"]
        good = sheet([row(1, "0101010101010101"), row(2, "0202020202020202")])
        r = await h.post("/sensors/import.csv", content=good)
        assert r.status_code == 200, r.text
        assert r.json()["created"] == 2
        # someone else's DevEUI is refused; giving it up and taking it in one file is fine
        stolen = sheet([row(3, "0101010101010101")])
        r = await h.post("/sensors/import.csv", content=stolen)
        assert r.status_code == 422
        assert "WL-B1" in r.json()["errors"][0]["message"]
        swap = sheet([row(1, "0303030303030303"), row(3, "0101010101010101")])
        r = await h.post("/sensors/import.csv", content=swap)
        assert r.status_code == 200, r.text
        exported = await h.get("/sensors/export.csv")
        by_id = {r["id"]: r for r in csv.DictReader(io.StringIO(exported.text))}
        assert by_id["WL-B1"]["dev_eui"] == "0303030303030303"
        assert by_id["WL-B3"]["dev_eui"] == "0101010101010101"
        again = await h.post("/sensors/import.csv", content=exported.text)
        assert again.json()["unchanged"] == 3


def test_cli_registers_and_lists_by_dev_eui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORNET_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    args = ["registry", "register", "WL-C1", "--type", "waterlogging", "--subdistrict",
            "beizhan", "--lat", "31.2471", "--lon", "121.4752"]  # fmt: skip
    out = cli.invoke(app, [*args, "--dev-eui", "70b3d57ed005b89a"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["dev_eui"] == "70B3D57ED005B89A"
    clash = cli.invoke(app, [*args[:2], "WL-C2", *args[3:], "--dev-eui", "70B3D57ED005B89A"])
    assert clash.exit_code == 1 and "already registered to sensor WL-C1" in clash.output
    listed = cli.invoke(app, ["registry", "list", "--dev-eui", "70:B3:D5:7E:D0:05:B8:9A"])
    assert [s["id"] for s in json.loads(listed.stdout)["items"]] == ["WL-C1"]
