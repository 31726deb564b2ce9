"""Notifications through a real Alertmanager (0.25, the Debian package) to real receivers
on loopback: an SMTP server (aiosmtpd), a generic webhook, and WeCom / DingTalk robots
behind the project's relay (an HTTP server that checks each payload against the robots'
published formats and verifies DingTalk's signature itself). Alertmanager's timings are
shortened by the test's routing file (group_wait 1s, group_interval 1s, repeat 3s)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from alert_receivers import HttpReceiver, Received, SmtpServer, http_receiver, smtp_server
from support import wait_until

from alarms.alertmanager import AlertmanagerClient, alertmanager_client
from alarms.notify import Notifier
from alarms.relay import relay_app, run_relay
from alarms.routing import load_routing
from dashboards.provisioning import write_provisioning
from sensornet.alarms.store import AlarmRecord
from sensornet.errors import ConfigError
from sensornet.registry.maintenance import Window
from sensornet.settings import Settings
from wiring.alerting import Alertmanager, alertmanager_service
from wiring.services import free_port

DING_SECRET = "SECtest-signing-secret"


def routing_doc(hook_url: str) -> dict[str, Any]:
    return {
        "version": 1,
        "group_by": ["alertname", "rule", "subdistrict"],
        "group_wait": "1s",
        "group_interval": "1s",
        "repeat_interval": "3s",
        "receivers": {
            "duty-mail": {"email": {"to": ["duty@example.org"]}},
            "city-hook": {"webhook": {"url": f"{hook_url}/hook"}},
            "duty-wecom": {"wecom": {}},
            "duty-ding": {"dingtalk": {}},
        },
        "routes": [
            {"match": {"alertname": "SensorAlarm"}, "receivers": ["city-hook"]},
            {
                "match": {"severity": ["critical"]},
                "receivers": ["duty-mail", "duty-wecom", "duty-ding"],
            },
        ],
        "default": ["city-hook"],
    }


def check_robot(got: Received) -> str | None:
    """What WeCom's and DingTalk's robot APIs require of a message (their documentation:
    developer.work.weixin.qq.com/document/path/91770, open.dingtalk.com custom robot)."""
    body = got.body
    if not isinstance(body, dict) or body.get("msgtype") != "markdown":
        return "msgtype markdown expected"
    if got.path == "/wecom":
        if got.query.get("key") != "wecom-key":
            return "wrong key"
        content = body.get("markdown", {}).get("content")
        if not isinstance(content, str) or not content or len(content.encode()) > 4096:
            return "markdown.content: 1..4096 bytes"
    elif got.path == "/ding":
        if got.query.get("access_token") != "ding-token":
            return "wrong access_token"
        md = body.get("markdown", {})
        if not md.get("title") or not md.get("text"):
            return "markdown.title and markdown.text required"
        ts = got.query.get("timestamp", "")
        if not ts.isdigit() or abs(int(ts) - time.time() * 1000) > 3_600_000:
            return "timestamp: milliseconds within an hour"
        # independently of alarms.robots: HMAC-SHA256 of "timestamp\nsecret", base64
        digest = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256)
        if got.query.get("sign") != base64.b64encode(digest.digest()).decode():
            return "bad signature"
    return None


@dataclass
class Rig:
    am: Alertmanager
    client: AlertmanagerClient
    hook: HttpReceiver
    robots: HttpReceiver
    smtp: SmtpServer
    settings: Settings

    def notifier(self, resend_s: float = 60.0) -> Notifier:
        return Notifier(self.client, "http://ops.example:8000", resend_s)

    def hook_alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for n in self.hook.bodies("/hook")
            for a in n["alerts"]
            if status is None or a["status"] == status
        ]


@contextlib.contextmanager
def receivers() -> Iterator[tuple[HttpReceiver, HttpReceiver, SmtpServer]]:
    with http_receiver() as hook, http_receiver() as robots, smtp_server() as smtp:
        robots.check = check_robot
        yield hook, robots, smtp


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    with receivers() as (hook, robots, smtp):
        routing_file = tmp_path / "routing.yaml"
        routing_file.write_text(yaml.safe_dump(routing_doc(hook.url)))
        settings = Settings(
            state_dir=tmp_path,
            alertmanager_url=f"http://127.0.0.1:{free_port()}",
            alert_routing_file=routing_file,
            alert_relay_port=free_port(),
            alert_smtp_smarthost=smtp.smarthost,
            alert_smtp_require_tls=False,
            alert_secrets=json.dumps(
                {  # type: ignore[arg-type]
                    "duty-wecom.url": f"{robots.url}/wecom?key=wecom-key",
                    "duty-ding.url": f"{robots.url}/ding?access_token=ding-token",
                    "duty-ding.secret": DING_SECRET,
                    "city-hook.token": "hook-token",
                }
            ),
            _env_file=None,  # type: ignore[call-arg]
        )
        am = alertmanager_service(settings, home=tmp_path / "alertmanager")
        am.start()
        stop = asyncio.Event()
        relay = asyncio.create_task(run_relay(settings, load_routing(routing_file), stop))
        try:
            async with alertmanager_client(settings.alertmanager_url) as client:
                yield Rig(am, client, hook, robots, smtp, settings)
        finally:
            stop.set()
            await relay
            am.stop()


def alarm(
    alarm_id: int,
    sensor: str = "WL-1",
    subdistrict: str = "jingansi",
    severity: str = "critical",
    **changes: Any,
) -> AlarmRecord:
    at = datetime.now(UTC) - timedelta(minutes=1)
    record = AlarmRecord(
        alarm_id, sensor, "waterlogging_depth", "waterlogging", subdistrict, "depth", 1,
        "impassable", severity, 25.0, 31.5, at, at, None, None, None, None,
    )  # fmt: skip
    return replace(record, **changes)


def acked(a: AlarmRecord, by: str = "key:k1(ops-desk) [engineer]") -> AlarmRecord:
    return replace(a, acknowledged_at=datetime.now(UTC), acknowledged_by=by)


async def test_fire_group_repeat_resolve_to_every_receiver(rig: Rig) -> None:
    notifier = rig.notifier()
    a1, a2 = alarm(1, "WL-1"), alarm(2, "WL-2")  # same rule and subdistrict: one group
    await notifier.sync([a1, a2], [])

    async def fired() -> list[dict[str, Any]]:
        # grouped: one notification carries both (on a loaded machine Alertmanager may send
        # the group's first before it holds the second; the next, a group_interval later,
        # has both)
        return [n for n in rig.hook.bodies("/hook") if len(n["alerts"]) == 2]

    (first, *_) = await wait_until(fired, timeout_s=15)
    assert first["status"] == "firing"
    labels = first["alerts"][0]["labels"]
    routed_on = ("rule", "severity", "quantity", "sensor_type", "subdistrict")
    assert {k: labels[k] for k in routed_on} == {
        "rule": "waterlogging_depth", "severity": "critical", "quantity": "depth",
        "sensor_type": "waterlogging", "subdistrict": "jingansi",
    }  # fmt: skip
    assert {a["labels"]["sensor"] for a in first["alerts"]} == {"WL-1", "WL-2"}
    link = {a["labels"]["sensor"]: a["generatorURL"] for a in first["alerts"]}["WL-1"]
    assert link == "http://ops.example:8000/sensors/WL-1/view"
    hook_request = next(r for r in rig.hook.received if r.path == "/hook")
    assert hook_request.headers["Authorization"] == "Bearer hook-token"  # from a 0600 file

    async def mailed() -> bool:
        return bool(rig.smtp.messages)

    await wait_until(mailed, timeout_s=15)
    mail = rig.smtp.messages[0]
    assert mail["To"] == "duty@example.org" and "FIRING" in str(mail["Subject"])

    async def robots_told() -> bool:
        return {r.path for r in rig.robots.received} >= {"/wecom", "/ding"}

    await wait_until(robots_told, timeout_s=15)
    assert rig.robots.problems == []  # formats and DingTalk signature checked on receipt
    wecom = rig.robots.bodies("/wecom")[0]["markdown"]["content"]
    assert "WL-1" in wecom and "WL-2" in wecom and "/sensors/WL-1/view" in wecom
    ding = rig.robots.bodies("/ding")[0]["markdown"]
    assert "waterlogging_depth" in ding["title"] and "WL-2" in ding["text"]

    # unchanged and unacknowledged: Alertmanager repeats it (repeat_interval 3s here)
    async def repeated() -> bool:
        return len([n for n in rig.hook.bodies("/hook") if n["status"] == "firing"]) >= 2

    await wait_until(repeated, timeout_s=15)

    await notifier.sync([], [])  # both ended

    async def resolved() -> set[str]:
        ended = [
            a
            for n in rig.hook.bodies("/hook")
            if n["status"] == "resolved"
            for a in n["alerts"]
            if a["status"] == "resolved"
        ]
        sensors = {a["labels"]["sensor"] for a in ended}
        return sensors if sensors == {"WL-1", "WL-2"} else set()

    await wait_until(resolved, timeout_s=15)
    assert notifier.stats.posts_ok >= 2 and notifier.stats.failures == 0


async def test_acknowledge_silences_until_unacknowledged_or_resolved(rig: Rig) -> None:
    notifier = rig.notifier()
    quiet, loud = acked(alarm(1, "WL-1")), alarm(2, "WL-9", subdistrict="beizhan")
    await notifier.sync([quiet, loud], [])

    async def silences() -> list[dict[str, Any]]:
        return [s for s in await rig.client.silences() if s["status"]["state"] == "active"]

    (silence,) = await silences()
    assert silence["createdBy"] == "ops-desk"  # the acknowledging key's name
    assert silence["matchers"] == [
        {"name": "alarm_id", "value": "1", "isRegex": False, "isEqual": True}
    ]

    async def loud_told() -> bool:
        return any(a["labels"]["sensor"] == "WL-9" for a in rig.hook_alerts())

    await wait_until(loud_told, timeout_s=15)
    await asyncio.sleep(1.5)  # a group interval more: the silenced alarm never came
    assert all(a["labels"]["sensor"] != "WL-1" for a in rig.hook_alerts())
    await notifier.sync([quiet, loud], [])  # the next round changes nothing
    assert len(await silences()) == 1

    await notifier.sync([replace(quiet, acknowledged_at=None, acknowledged_by=None), loud], [])
    assert await silences() == []  # un-acknowledged: expired, it notifies again

    async def quiet_told() -> bool:
        return any(a["labels"]["sensor"] == "WL-1" for a in rig.hook_alerts())

    await wait_until(quiet_told, timeout_s=15)
    await notifier.sync([acked(quiet), loud], [])
    assert len(await silences()) == 1
    await notifier.sync([loud], [])  # the acknowledged alarm ended: its silence too
    assert await silences() == []
    # an operator's own silence is not the platform's to expire
    now = datetime.now(UTC)
    await rig.client.create_silence({
        "matchers": [{"name": "sensor", "value": "X", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "someone", "comment": "by hand",
    })  # fmt: skip
    await notifier.sync([loud], [])
    assert [s["createdBy"] for s in await silences()] == ["someone"]


async def test_maintenance_window_silences_its_sensor_or_subdistrict(rig: Rig) -> None:
    notifier = rig.notifier()
    now = datetime.now(UTC)
    window = Window(7, None, "jingansi", now - timedelta(minutes=5), now + timedelta(hours=1),
                    "pump works", "key:k2(field-team) [engineer]")  # fmt: skip
    inside, outside = alarm(1, "WL-1"), alarm(2, "WL-9", subdistrict="beizhan")
    await notifier.sync([inside, outside], [window])
    (silence,) = [s for s in await rig.client.silences() if s["status"]["state"] == "active"]
    assert silence["createdBy"] == "field-team"
    assert [(m["name"], m["value"]) for m in silence["matchers"]] == [("subdistrict", "jingansi")]
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert abs((ends - window.ends_at).total_seconds()) < 1

    async def outside_told() -> bool:
        return any(a["labels"]["sensor"] == "WL-9" for a in rig.hook_alerts())

    await wait_until(outside_told, timeout_s=15)
    await asyncio.sleep(1.5)
    assert all(a["labels"]["subdistrict"] != "jingansi" for a in rig.hook_alerts())

    # a sensor's window: its alerts from the runner and Prometheus (label sensor) and from
    # Grafana (label sensor_id) are silenced alike
    one = replace(window, id=8, subdistrict=None, sensor_id="WL-9")
    await notifier.sync([inside, outside], [window, one])
    held = [s for s in await rig.client.silences() if s["status"]["state"] == "active"]
    assert sorted((m["name"], m["value"]) for s in held for m in s["matchers"]) == [
        ("sensor", "WL-9"), ("sensor_id", "WL-9"), ("subdistrict", "jingansi"),
    ]  # fmt: skip
    await notifier.sync([inside, outside], [window])
    held = [s for s in await rig.client.silences() if s["status"]["state"] == "active"]
    assert [s["matchers"][0]["name"] for s in held] == ["subdistrict"]

    # the window ended early (sensornet maintenance end): its silence is expired
    over = replace(window, ends_at=datetime.now(UTC) - timedelta(seconds=1))
    await notifier.sync([inside, outside], [over])
    assert [s for s in await rig.client.silences() if s["status"]["state"] == "active"] == []

    async def inside_told() -> bool:
        return any(a["labels"]["sensor"] == "WL-1" for a in rig.hook_alerts())

    await wait_until(inside_told, timeout_s=15)


async def test_alertmanager_down_holds_notifications_back_then_delivers(rig: Rig) -> None:
    notifier = rig.notifier()
    rig.am.stop()
    await notifier.sync([alarm(1)], [])  # no exception: logged, tried again next round
    assert not notifier.stats.up and notifier.stats.failures == 1
    rig.am.start()
    await notifier.sync([alarm(1)], [])
    assert notifier.stats.up

    async def told() -> bool:
        return bool(rig.hook_alerts("firing"))

    await wait_until(told, timeout_s=15)


async def test_robot_refusing_is_retried_by_alertmanager(rig: Rig) -> None:
    """The relay answers 502 when the robot refuses, so Alertmanager tries again."""
    rig.robots.answers["/wecom"] = (200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    await rig.notifier().sync([alarm(1)], [])

    async def tried_twice() -> bool:
        return len(rig.robots.bodies("/wecom")) >= 2

    await wait_until(tried_twice, timeout_s=30)
    rig.robots.answers.clear()


def test_generated_configuration_holds_no_secret(rig: Rig) -> None:
    text = rig.am.config_file.read_text()
    for secret in rig.settings.alert_secret_names().values():
        assert secret not in text
    token = rig.am.home / "secrets" / "city-hook.token"
    assert token.read_text() == "hook-token" and token.stat().st_mode & 0o777 == 0o600
    assert str(token) in text


def test_relay_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    routing_file = tmp_path / "r.yaml"
    routing_file.write_text(yaml.safe_dump(routing_doc("http://127.0.0.1:1")))
    with pytest.raises(ConfigError, match=r"duty-ding\.secret"):
        relay_app(load_routing(routing_file), {"duty-wecom.url": "u", "duty-ding.url": "u"})


def test_notification_json_is_what_alertmanager_documents(rig: Rig) -> None:
    """Alertmanager's webhook body is version 4 (the relay reads it): keep an eye on it."""
    # posted by hand through Alertmanager's API, as any other client would
    alert = [{"labels": {"alertname": "SensorAlarm", "severity": "info", "rule": "r"}}]
    request = urllib.request.Request(
        f"{rig.am.url}/api/v2/alerts", data=json.dumps(alert).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200
    deadline = time.monotonic() + 15
    while not rig.hook.bodies("/hook") and time.monotonic() < deadline:
        time.sleep(0.05)
    body = rig.hook.bodies("/hook")[0]
    assert body["version"] == "4" and {"receiver", "status", "alerts", "groupLabels",
                                       "commonLabels", "externalURL"} <= set(body)  # fmt: skip


async def test_grafana_alerting_points_at_the_same_alertmanager(rig: Rig, tmp_path: Path) -> None:
    """Grafana's generated contact point and policy send everything to the platform's
    Alertmanager; what Grafana's prometheus-alertmanager contact point posts there
    (<url>/api/v2/alerts) reaches the routing file's receivers."""
    write_provisioning(tmp_path, "http://influxdb:8086", "sensornet",
                       alertmanager_url=rig.am.url + "/")  # fmt: skip
    text = (tmp_path / "provisioning/alerting/sensornet-notifications.yaml").read_text()
    doc = yaml.safe_load(text)
    (contact,) = doc["contactPoints"]
    (receiver,) = contact["receivers"]
    assert receiver["type"] == "prometheus-alertmanager"
    (policy,) = doc["policies"]
    assert policy["receiver"] == contact["name"] and policy["group_by"] == ["..."]
    alert = {"labels": {"alertname": "pm25_aqi: light", "grafana_folder": "Sensornet",
                        "severity": "warning", "rule": "pm25_aqi", "sensor_id": "AQ-1"},
             "annotations": {"summary": "AQ-1: light"}}  # fmt: skip
    await rig.client.http.post(receiver["settings"]["url"] + "/api/v2/alerts", json=[alert])

    async def told() -> bool:
        return any(a["labels"].get("sensor_id") == "AQ-1" for a in rig.hook_alerts())

    await wait_until(told, timeout_s=15)


async def test_level_change_resolves_the_old_alert_and_resends_are_periodic(rig: Rig) -> None:
    notifier = rig.notifier(resend_s=0.5)
    worse = alarm(1, severity="critical")
    await notifier.sync([replace(worse, severity="warning", level=0, level_name="water on road")],
                        [])  # fmt: skip
    assert notifier.stats.posts_ok == 1
    await notifier.sync([replace(worse, severity="warning", level=0, level_name="water on road")],
                        [])  # fmt: skip
    assert notifier.stats.posts_ok == 1  # unchanged, not yet due
    await asyncio.sleep(0.6)
    await notifier.sync([replace(worse, severity="warning", level=0, level_name="water on road")],
                        [])  # fmt: skip
    assert notifier.stats.posts_ok == 2  # due again: Alertmanager must keep hearing of it
    await notifier.sync([worse], [])  # escalated: new labels, the old alert resolved

    async def both() -> bool:
        got = {(a["labels"]["severity"], a["status"]) for a in rig.hook_alerts()}
        return {("warning", "resolved"), ("critical", "firing")} <= got

    await wait_until(both, timeout_s=15)
