"""A sensor's names for other ways in (SenML name, Sensor.Community chip and location):
registered through the API and the bulk import, unique, and found by the ingester's cache."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
from support import running

from sensornet.registry.bulk import COLUMNS
from sensornet.registry.store import DeviceCache, open_registry
from sensornet.settings import Settings
from wiring.parts import run_api

URN = "urn:dev:ow:10e2073a01080063"


def node(sensor_id: str, **names: Any) -> dict[str, Any]:
    return {"id": sensor_id, "type": "community_air", "subdistrict": "jingansi",
            "lat": 31.229, "lon": 121.447, "status": "active", **names}  # fmt: skip


async def test_names_are_registered_unique_and_resolved(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {api_keys['engineer']}"}
    async with running(run_api, settings), httpx.AsyncClient(base_url=base, headers=headers) as h:
        r = await h.post("/sensors", json=node("SC-1", senml_name=URN, sc_chip="13597771",
                                                sc_location="90001"))  # fmt: skip
        assert r.status_code == 201, r.text
        for clash in ({"senml_name": URN}, {"sc_chip": "13597771"}, {"sc_location": "90001"}):
            r = await h.post("/sensors", json=node("SC-2", **clash))
            assert r.status_code == 409 and "SC-1" in r.json()["detail"], r.text
        for bad in ({"senml_name": "urn dev"}, {"senml_name": "-x"}, {"sc_chip": "12/34"},
                    {"sc_location": "abc"}):  # fmt: skip
            assert (await h.post("/sensors", json=node("SC-3", **bad))).status_code == 422
        assert (await h.patch("/sensors/SC-1", json={"sc_chip": "777"})).status_code == 200
        r = await h.post("/sensors", json=node("SC-2", sc_chip="13597771"))
        assert r.status_code == 201, r.text  # SC-1 gave it up

        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for i, chip in ((4, "4444"), (5, "4444")):
            writer.writerow({k: str(v) for k, v in node(f"SC-{i}", sc_chip=chip).items()})
        r = await h.post("/sensors/import.csv", content=out.getvalue(),
                         headers={"content-type": "text/csv"})  # fmt: skip
        assert r.status_code == 422, r.text
        assert [(e["row"], e["field"]) for e in r.json()["errors"]] == [(2, "sc_chip")]

    async with open_registry(settings.registry_database_url) as engine:
        cache = DeviceCache(engine)
        await cache.refresh(force=True)
        keys = (("senml_name", URN), ("sc_chip", "13597771"), ("sc_location", "90001"))
        found = [cache.resolve(scheme, key) for scheme, key in keys]
        assert [d.id if d else None for d in found] == ["SC-1", "SC-2", "SC-1"]
        assert cache.resolve("sc_chip", "424242") is None
