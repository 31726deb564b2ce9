"""Per-device accounting and liveness through the real API, ingester and InfluxDB."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import gmqtt
import httpx
import orjson
import pytest
from support import mqtt_client, running, wait_until

from sensornet.accounting import count_stored, settle_margin_ns
from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_api, run_ingester

AQ = DeviceInfo("AQ-1", "air_quality", "jingansi", 31.22, 121.45, "active")
NS = DeviceInfo("NS-1", "noise", "jingansi", 31.22, 121.45, "active")


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """A short InfluxDB timeout and report interval keep the settling margin
    (docs/accounting.md) at ~3 s."""
    return settings.model_copy(update={"influx_timeout_s": 2.0, "ingest_report_interval_s": 1.0})


@pytest.fixture
async def api(
    quick: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    await register_fleet(quick, [AQ, NS])
    base = f"http://{quick.api_host}:{quick.api_port}"
    async with (
        running(run_ingester, quick),
        running(run_api, quick),
        httpx.AsyncClient(base_url=base, headers=viewer_headers, timeout=30) as http,
    ):
        yield http


async def publish(settings: Settings, readings: Iterable[dict[str, Any]]) -> None:
    """QoS 1 to AQ-1's topic; returns once the broker acknowledged every one."""
    topic = f"{settings.topic_prefix}/AQ-1/readings".encode()
    password = settings.fleet_password()
    publisher = BulkPublisher(settings.mqtt_host, settings.mqtt_port, "acc", "simulator", password)
    await publisher.publish_all((topic, orjson.dumps(r)) for r in readings)


async def account_once(
    http: httpx.AsyncClient, received: int, **params: int | str
) -> dict[str, Any]:
    """The account once ``received`` readings have landed. Every figure comes from the
    same rows (one read), so once the count is there the rest is that of the same rows."""

    async def landed() -> dict[str, Any]:
        r = await http.get("/devices/AQ-1/accounting", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["received"] <= received, body
        return body if body["received"] == received else {}

    return await wait_until(landed, timeout_s=60)


async def settled(http: httpx.AsyncClient, end_ns: int) -> dict[str, Any]:
    """The account of the window ending at ``end_ns`` once the API says it is settled."""

    async def answer() -> dict[str, Any]:
        params = {"end": _iso(end_ns), "start": _iso(end_ns - 3600 * 10**9)}
        body: dict[str, Any] = (await http.get("/devices/AQ-1/accounting", params=params)).json()
        return {} if body["settling"] else body

    return await wait_until(answer, timeout_s=60)


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + (
        f".{ns % 10**9 // 1000:06d}Z"
    )


async def test_account_counts_stored_rejected_and_missing(
    quick: Settings, api: httpx.AsyncClient
) -> None:
    sent = [s for s in range(10) if s not in (3, 4)]  # 3 and 4 never arrive
    await publish(quick, ({"seq": s, "pm25": -1.0 if s == 5 else 10.0 + s} for s in sent))
    body = await account_once(api, len(sent))
    assert body["stored"] == 7
    assert body["rejected_by_reason"] == {"out_of_range": 1}
    assert (body["missing"], body["duplicates"], body["resets"]) == (2, 0, 0)
    assert (body["first_seq"], body["last_seq"]) == (0, 9)
    assert body["liveness"] == "online"
    # a window ending now can still change: the API says so, and when it will not
    assert body["settling"] and body["settling_reasons"] == ["window_end_recent"]
    margin = settle_margin_ns(quick)
    settles_at = datetime.fromisoformat(body["settles_at"]).timestamp()
    assert settles_at == pytest.approx((body["end_ns"] + margin) / 1e9, abs=1e-5)
    later = await settled(api, body["end_ns"])
    assert later["settles_at"] is None and later["settling_reasons"] == []
    assert {k: later[k] for k in ("received", "missing", "first_seq", "last_seq")} == {
        "received": 8,
        "missing": 2,
        "first_seq": 0,
        "last_seq": 9,
    }
    never = (await api.get("/devices/NS-1/accounting")).json()
    assert (never["received"], never["missing"], never["liveness"]) == (0, 0, "never")
    assert never["first_seq"] is None and never["epochs"] == []
    assert (await api.get("/devices/NOPE/accounting")).status_code == 404
    anonymous = await api.get("/devices/AQ-1/accounting", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_a_reboot_a_wrap_duplicates_and_gaps_are_counted_per_epoch(
    quick: Settings, api: httpx.AsyncClient
) -> None:
    t0_ms = time.time_ns() // 10**6 - 600_000  # the device's own clock, 10 min ago
    top = 2**16
    # a 16-bit counter wraps; its seq 2 is lost (one missing)
    first = [top - 3, top - 2, top - 1] + [s for s in range(41) if s != 2]
    # then it reboots and counts from 0 again; 4 is lost, 6 is out of range and sent twice
    second = [0, 1, 2, 3, 5, 6, 6, 7, 8]
    readings = [{"ts": t0_ms + k * 1000, "seq": s, "pm25": 12.0} for k, s in enumerate(first)]
    readings += [
        {"ts": t0_ms + 60_000 + k * 1000, "seq": s, "pm25": 5000.0 if s == 6 else 12.0}
        for k, s in enumerate(second)
    ]
    await publish(quick, readings)
    body = await account_once(api, len(readings))
    assert (body["stored"], body["rejected_by_reason"]) == (50, {"out_of_range": 2})
    assert (body["resets"], body["wraps"], body["missing"], body["duplicates"]) == (1, 1, 2, 1)
    epochs = [
        {k: e[k] for k in ("began", "first_seq", "last_seq", "missing", "duplicates")}
        for e in body["epochs"]
    ]
    assert epochs == [
        {"began": "window", "first_seq": top - 3, "last_seq": 40, "missing": 1, "duplicates": 0},
        {"began": "reset", "first_seq": 0, "last_seq": 8, "missing": 1, "duplicates": 1},
    ]
    assert body["epochs"][0]["counter_bits"] == 16
    assert (body["first_seq"], body["last_seq"], body["unplaced"]) == (top - 3, 8, 0)
    # the second epoch alone: a window that starts after the reboot
    after = (
        await api.get(
            "/devices/AQ-1/accounting",
            params={"start": _iso((t0_ms + 59_000) * 10**6), "end": _iso(time.time_ns())},
        )
    ).json()
    assert (after["received"], after["resets"], after["missing"]) == (9, 0, 1)


async def test_the_window_is_bounded_and_a_cut_answer_says_so(
    quick: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> None:
    few = quick.model_copy(update={"accounting_max_rows": 4})
    await register_fleet(few, [AQ])
    t0_ms = time.time_ns() // 10**6 - 60_000
    async with (
        running(run_ingester, few),
        running(run_api, few),
        httpx.AsyncClient(
            base_url=f"http://{few.api_host}:{few.api_port}", headers=viewer_headers
        ) as http,
    ):
        await publish(few, ({"ts": t0_ms + s * 1000, "seq": s, "pm25": 1.0} for s in range(10)))

        async def all_stored() -> bool:
            return await count_stored(influx, {"air_quality"}) == 10

        await wait_until(all_stored, timeout_s=60)

        async def cut() -> dict[str, Any]:
            body: dict[str, Any] = (await http.get("/devices/AQ-1/accounting")).json()
            return body if not body["complete"] else {}

        body = await wait_until(cut, timeout_s=60)
        assert (body["received"], body["first_seq"], body["last_seq"]) == (4, 0, 3)
        assert body["end_ns"] == (t0_ms + 4000) * 10**6  # the first reading not counted
        assert body["max_rows"] == 4

        week = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-08T00:00:01Z"}
        too_long = await http.get("/devices/AQ-1/accounting", params=week)
        assert too_long.status_code == 422
        assert too_long.headers["content-type"] == "application/problem+json"
        assert too_long.json()["title"] == "Range too long" and too_long.json()["max_days"] == 7
        naive = await http.get("/devices/AQ-1/accounting", params={"end": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
        ancient = await http.get("/devices/AQ-1/accounting", params={"end": "0001-01-01T00:00Z"})
        assert ancient.status_code == 422
        backwards = {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
        assert (await http.get("/devices/AQ-1/accounting", params=backwards)).status_code == 422


async def test_last_will_marks_a_device_offline(
    settings: Settings, influx: InfluxClient, viewer_headers: dict[str, str]
) -> None:
    await register_fleet(settings, [NS])
    status = f"{settings.topic_prefix}/NS-1/status"
    will = gmqtt.Message(status, b"offline", qos=1, retain=True)
    password = settings.fleet_password()
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with (
        running(run_ingester, settings),
        running(run_api, settings),
        mqtt_client("NS-1", settings.mqtt_port, "simulator", password, will_message=will) as device,
        httpx.AsyncClient(base_url=base, headers=viewer_headers) as http,
    ):
        device.publish(status, b"online", retain=True)
        device.publish(f"{settings.topic_prefix}/NS-1/readings", b'{"laeq": 55.0}')

        async def state(expected: str) -> bool:
            body = (await http.get("/devices/NS-1/accounting")).json()
            return bool(body["status"] == expected)

        await wait_until(lambda: state("online"))
        await device.vanish()  # without DISCONNECT: the broker sends the Will
        await wait_until(lambda: state("offline"))
        body = (await http.get("/devices/NS-1/accounting")).json()
        assert body["liveness"] == "offline"
