"""Tells Alertmanager about alarms: every active alarm as a firing alert (sent when it
fires or changes, and again every ``resend_s``, as Alertmanager expects of its clients),
every alarm that ended as a resolved one (``endsAt`` = now); and keeps Alertmanager's
silences in step with the platform: one per acknowledged alarm (author: the acknowledger's
key name) and one per maintenance window.

The silences are reconciled, not fired and forgotten: each round compares what should be
silenced with what Alertmanager holds (our silences carry a ``sensornet:`` marker in their
comment) and creates or expires the difference. So an acknowledgement made while
Alertmanager was down takes effect when it is back, and un-acknowledging, a worse level
(which clears the acknowledgement) or the alarm's end expire the silence.

The alert and silence bodies are pure functions of the alarm, tested without I/O."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alarms.alertmanager import AlertmanagerClient, AlertmanagerError
from sensornet.alarms.store import AlarmRecord
from sensornet.registry.maintenance import Window

log = logging.getLogger("sensornet.alarms.notify")

ALERTNAME = "SensorAlarm"
MARKER = "sensornet:"
#: an acknowledgement's silence lasts until the alarm ends; this bounds it should the
#: runner never come back to expire it
ACK_SILENCE = timedelta(days=30)
_KEY_NAME = re.compile(r"^key:[^(\s]+\((?P<name>.*)\) \[[a-z]+\]$")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sensor_link(link_base: str, sensor_id: str) -> str:
    return f"{link_base.rstrip('/')}/sensors/{sensor_id}/view"


def alert_for(a: AlarmRecord, link_base: str, now: datetime, resend_s: float) -> dict[str, Any]:
    """The Alertmanager v2 alert of an active alarm. ``endsAt`` 4 resends ahead: should
    the runner stop, Alertmanager resolves it by itself (Prometheus does the same)."""
    threshold = "" if a.threshold is None else f" (threshold {a.threshold:g})"
    link = sensor_link(link_base, a.sensor_id)
    return {
        "labels": {
            "alertname": ALERTNAME,
            "alarm_id": str(a.id),
            "rule": a.rule_id,
            "severity": a.severity,
            "level": a.level_name,
            "quantity": a.quantity,
            "sensor": a.sensor_id,
            "sensor_type": a.type,
            "subdistrict": a.subdistrict,
        },
        "annotations": {
            "summary": f"{a.sensor_id} {a.quantity} {a.level_name}",
            "description": f"{a.quantity} = {a.value:g}{threshold} at {a.sensor_id} "
            f"({a.type}, {a.subdistrict}) since {iso(a.raised_at)}",
            "value": f"{a.value:g}",
            "sensor_url": link,
        },
        "startsAt": iso(a.raised_at),
        "endsAt": iso(now + timedelta(seconds=4 * resend_s)),
        "generatorURL": link,
    }


def resolved(alert: dict[str, Any], now: datetime) -> dict[str, Any]:
    return alert | {"endsAt": iso(now)}


def author(acknowledged_by: str) -> str:
    """The key's name from ``key:<id>(<name>) [<role>]`` (api.alarm_routes.acknowledger)."""
    m = _KEY_NAME.match(acknowledged_by)
    return m.group("name") if m else acknowledged_by


def _matcher(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": False, "isEqual": True}


def desired_silences(
    active: Iterable[AlarmRecord], windows: Iterable[Window], now: datetime
) -> dict[str, dict[str, Any]]:
    """marker -> silence body, for every acknowledged alarm and every window not over."""
    out: dict[str, dict[str, Any]] = {}
    for a in active:
        if a.acknowledged_at is None or a.acknowledged_by is None:
            continue
        key = f"{MARKER}alarm:{a.id}"
        out[key] = {
            "matchers": [_matcher("alarm_id", str(a.id))],
            "startsAt": iso(now),
            "endsAt": iso(now + ACK_SILENCE),
            "createdBy": author(a.acknowledged_by),
            "comment": f"{key} acknowledged {a.sensor_id} {a.rule_id}"
            + (f": {a.note}" if a.note else ""),
        }
    for w in windows:
        if w.ends_at <= now:
            continue
        key = f"{MARKER}maintenance:{w.id}"
        if w.sensor_id is not None:
            # the runner's and Prometheus's alerts say ``sensor``; Grafana's, ``sensor_id``
            matchers = {key: _matcher("sensor", w.sensor_id),
                        f"{key}:grafana": _matcher("sensor_id", w.sensor_id)}  # fmt: skip
        else:
            matchers = {key: _matcher("subdistrict", w.subdistrict or "")}
        for marker, matcher in matchers.items():
            out[marker] = {
                "matchers": [matcher],
                "startsAt": iso(max(w.starts_at, now)),
                "endsAt": iso(w.ends_at),
                "createdBy": author(w.created_by) or "sensornet",
                "comment": f"{marker} maintenance of {w.sensor_id or w.subdistrict}"
                + (f": {w.reason}" if w.reason else ""),
            }
    return out


def _same(held: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Same matchers and (for windows) the same end, within a second."""

    def matchers(s: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted((m["name"], m["value"]) for m in s["matchers"])

    if matchers(held) != matchers(wanted):
        return False
    if wanted["comment"].startswith(f"{MARKER}alarm:"):
        return True  # an acknowledgement's end is only a bound
    ends = [datetime.fromisoformat(s["endsAt"].replace("Z", "+00:00")) for s in (held, wanted)]
    return abs((ends[0] - ends[1]).total_seconds()) < 1


def reconcile(
    held: Iterable[dict[str, Any]], wanted: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """(silences to create, ids of silences to expire): ours that are active or pending
    and no longer wanted or changed, and what is wanted but not held."""
    ours: dict[str, dict[str, Any]] = {}
    expire: list[str] = []
    for s in held:
        if s.get("status", {}).get("state") not in ("active", "pending"):
            continue
        comment = str(s.get("comment", ""))
        if not comment.startswith(MARKER):
            continue  # an operator's own silence: not ours to touch
        key = comment.split(" ", 1)[0]
        if key in wanted and key not in ours and _same(s, wanted[key]):
            ours[key] = s
        else:
            expire.append(str(s["id"]))
    create = [body for key, body in wanted.items() if key not in ours]
    return create, expire


@dataclass
class NotifyStats:
    posts_ok: int = 0
    failures: int = 0  # rounds Alertmanager did not take (down, refused)
    silences_created: int = 0
    silences_expired: int = 0
    up: bool = False


class Notifier:
    """The runner's link to Alertmanager; :meth:`sync` once per round."""

    def __init__(self, client: AlertmanagerClient, link_base: str, resend_s: float) -> None:
        self.client, self.link_base, self.resend_s = client, link_base, resend_s
        self.sent: dict[int, dict[str, Any]] = {}  # alarm id -> last alert Alertmanager took
        self.last_post: datetime | None = None
        self.stats = NotifyStats()
        self._failing = False

    async def sync(self, active: list[AlarmRecord], windows: list[Window]) -> None:
        """Send what changed (and everything every ``resend_s``), then reconcile silences.
        Alertmanager unreachable: logged once, everything is tried again next round."""
        now = datetime.now(UTC)
        try:
            # silences first: an alert posted before its silence would notify once
            await self._silences(active, windows, now)
            await self._alerts(active, now)
        except AlertmanagerError as exc:
            self.stats.up = False
            self.stats.failures += 1
            if not self._failing:
                log.warning("alarm notifications held back, Alertmanager: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.warning("Alertmanager reachable again: notifications resumed")
        self._failing = False
        self.stats.up = True

    async def _alerts(self, active: list[AlarmRecord], now: datetime) -> None:
        alerts = {a.id: alert_for(a, self.link_base, now, self.resend_s) for a in active}
        ended = [
            resolved(old, now)
            for alarm_id, old in self.sent.items()
            if alarm_id not in alerts or alerts[alarm_id]["labels"] != old["labels"]
        ]
        changed = ended or any(
            alarm_id not in self.sent or self.sent[alarm_id]["labels"] != alert["labels"]
            for alarm_id, alert in alerts.items()
        )
        due = self.last_post is None or (now - self.last_post).total_seconds() >= self.resend_s
        if not (changed or (due and alerts)):
            return
        await self.client.post_alerts([*ended, *alerts.values()])
        self.stats.posts_ok += 1
        self.sent, self.last_post = alerts, now

    async def _silences(
        self, active: list[AlarmRecord], windows: list[Window], now: datetime
    ) -> None:
        create, expire = reconcile(
            await self.client.silences(), desired_silences(active, windows, now)
        )
        for silence_id in expire:
            await self.client.expire_silence(silence_id)
            self.stats.silences_expired += 1
        for body in create:
            await self.client.create_silence(body)
            self.stats.silences_created += 1
