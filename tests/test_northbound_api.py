"""Subscriptions through the API: roles, refusals with a reason, the secret shown once
and never again; a receiver that keeps failing is paused with an alarm (state, reason,
metric, log) and, resumed by an engineer, gets everything it missed."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import httpx
import pytest
from northbound_support import fast, in_order_per_sensor, write_readings
from support import running, wait_until

from alarms.northbound.pusher import run_pusher
from alarms.northbound.receiver import Faults, Receiver
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.parts import run_api
from wiring.services import free_port


def _api(settings: Settings, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "city ops",
        "url": "https://ops.example.gov.cn/sensornet",
        "kinds": ["readings", "alarms"],
        "filter": {"subdistricts": ["beizhan"], "types": ["air_quality"]},
    }
    body.update(over)
    return body


async def test_register_roles_refusals_and_the_secret_shown_once(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    async with (
        running(run_api, settings),
        _api(settings, api_keys["admin"]) as admin,
        _api(settings, api_keys["engineer"]) as engineer,
    ):
        assert (await engineer.post("/northbound/subscriptions", json=_body())).status_code == 403
        made = await admin.post("/northbound/subscriptions", json=_body())
        assert made.status_code == 201, made.text
        sub = made.json()
        assert sub["secret"].startswith("whsec_") and sub["state"] == "active"
        own = "whsec_" + base64.b64encode(b"s" * 32).decode()
        given = (await admin.post("/northbound/subscriptions", json=_body(secret=own))).json()
        assert "secret" not in given  # a secret the caller gave is not echoed
        for refused, says in [
            (_body(url="http://ops.example.gov.cn/x"), "plain http"),
            (_body(secret="hunter2"), "whsec_"),
            (_body(kinds=["everything"]), "unknown 'everything'"),
            (_body(kinds=["aggregates"]), "resolution"),
            (_body(filter={"subdistricts": ["atlantis"]}), "atlantis"),
            (_body(start="2026-01-01T00:00:00"), "offset"),
        ]:
            answer = await admin.post("/northbound/subscriptions", json=refused)
            assert answer.status_code == 422 and says in answer.text, answer.text
        extra = await admin.post("/northbound/subscriptions", json=_body(by="me"))
        assert extra.status_code == 422
        listed = (await engineer.get("/northbound/subscriptions")).json()
        assert listed["count"] == 2
        text = (await engineer.get("/northbound/subscriptions")).text
        one = (await engineer.get(f"/northbound/subscriptions/{sub['id']}")).text
        for shown in (text, one):
            assert sub["secret"] not in shown and own not in shown and "sealed" not in shown
        bad_window = {"start": "2026-01-01T00:00:30Z", "end": "2026-01-01T01:00:00Z"}
        answer = await engineer.get(
            f"/northbound/subscriptions/{sub['id']}/accounting", params=bad_window
        )
        assert answer.status_code == 422 and "whole minutes" in answer.text
        assert (await engineer.delete(f"/northbound/subscriptions/{sub['id']}")).status_code == 403
        assert (await admin.delete(f"/northbound/subscriptions/{sub['id']}")).status_code == 204
        assert (await admin.get(f"/northbound/subscriptions/{sub['id']}")).status_code == 404
    log = await _audit(settings)
    assert [(a, e) for a, e, _, _ in log] == [
        ("create", sub["id"]),
        ("create", given["id"]),
        ("delete", sub["id"]),
    ]
    assert all(actor.startswith("key:") and "test-admin" in actor for _, _, actor, _ in log)
    assert sub["secret"] not in str(log) and own not in str(log)


async def test_failing_receiver_is_paused_with_an_alarm_then_resumed(
    settings: Settings,
    influx: InfluxClient,
    api_keys: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics_port = free_port()
    settings = fast(settings, northbound_pause_after_s=1.5, northbound_metrics_port=metrics_port)
    start = time.time_ns() - 30 * 10**9
    async with (
        Receiver(None) as receiver,
        running(run_api, settings),
        _api(settings, api_keys["admin"]) as admin,
        _api(settings, api_keys["engineer"]) as engineer,
    ):
        receiver.faults = Faults(status=500)
        made = await admin.post(
            "/northbound/subscriptions",
            json={"name": "r", "url": receiver.url, "kinds": ["readings"],
                  "start": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(start / 1e9))}Z"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        sub_id, receiver.secret = made.json()["id"], made.json()["secret"]
        expected = await write_readings(influx, start + 10**9, 20)
        with caplog.at_level(logging.ERROR, "sensornet.northbound"):
            async with running(run_pusher, settings):
                paused = await wait_until(lambda: _state(engineer, sub_id, "paused"), 20)
                async with httpx.AsyncClient() as plain:
                    metrics = (await plain.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                tries = receiver.got.requests
                await _still(engineer, sub_id, "paused")
                assert receiver.got.requests == tries  # no retry for ever
                receiver.faults = Faults()
                resumed = await engineer.post(f"/northbound/subscriptions/{sub_id}/resume")
                assert resumed.status_code == 200 and resumed.json()["state"] == "active"
                await wait_until(lambda: _got(receiver, expected), 20)
                done = await wait_until(lambda: _state(engineer, sub_id, "active", delivered=60))
    assert paused["pause_reason"].startswith("receiver failing since")
    assert "HTTP 500" in paused["pause_reason"]
    assert paused["pending"] == len(expected) and paused["lag_s"] > 20
    assert f'sensornet_northbound_paused{{subscription="{sub_id}"}} 1.0' in metrics
    assert any("alarm: northbound subscription" in r.message for r in caplog.records)
    assert in_order_per_sensor(receiver.got.unique) and receiver.got.bad_signatures == 0
    assert done["pending"] == 0 and done["failing_since"] is None
    actions = [(a, actor.split("(")[0][:4]) for a, _, actor, _ in await _audit(settings)]
    assert actions == [("create", "key:"), ("pause", "nort"), ("resume", "key:")]


async def _audit(settings: Settings) -> list[tuple[str, str, str, str]]:
    """The audit log's northbound entries: (action, id, actor, before and after)."""
    from sqlalchemy import text

    from sensornet.registry.store import open_registry

    async with open_registry(settings.registry_database_url) as engine, engine.connect() as c:
        found = await c.execute(
            text(
                "SELECT action, entity_id, actor, before, after FROM audit_log "
                "WHERE entity = 'northbound_subscription' ORDER BY id"
            )
        )
        return [(a, e, actor, f"{b} {af}") for a, e, actor, b, af in found.all()]


async def _state(
    api: httpx.AsyncClient, sub_id: str, state: str, delivered: int | None = None
) -> dict[str, Any] | None:
    found: dict[str, Any] = (await api.get(f"/northbound/subscriptions/{sub_id}")).json()
    if found["state"] != state or (delivered is not None and found["delivered"] < delivered):
        return None
    return found


async def _still(api: httpx.AsyncClient, sub_id: str, state: str) -> None:
    for _ in range(10):
        assert await _state(api, sub_id, state) is not None
        await asyncio.sleep(0.2)


async def _got(receiver: Receiver, ids: list[str]) -> bool:
    return receiver.got.ids >= set(ids)
