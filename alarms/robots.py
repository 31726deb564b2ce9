"""Group-robot messages from an Alertmanager webhook notification: WeCom (企业微信) and
DingTalk (钉钉) custom robots, in their published formats, and DingTalk's signed-request
scheme. Pure functions; the relay (``alarms.relay``) does the posting.

- WeCom group robot: ``POST <webhook>?key=...`` with ``{"msgtype": "markdown",
  "markdown": {"content": ...}}``; content at most 4096 bytes (UTF-8).
- DingTalk custom robot: ``POST <webhook>?access_token=...&timestamp=<ms>&sign=<sign>``
  with ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}``, where
  sign = urlencode(base64(HMAC-SHA256(key=secret, msg="<timestamp>\\n<secret>"))); the
  robot refuses a timestamp more than an hour off.
Both answer ``{"errcode": 0, "errmsg": "ok"}``; any other errcode is a failure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from typing import Any

WECOM_MAX_BYTES = 4096
DINGTALK_MAX_BYTES = 20_000
_ICON = {"critical": "🔴", "major": "🟠", "warning": "🟡", "info": "🔵"}


def _lines(notification: dict[str, Any]) -> tuple[str, list[str]]:
    """A title and one markdown block per alert, most severe first."""
    status = str(notification.get("status", "firing"))
    alerts = list(notification.get("alerts", []))
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    common = notification.get("commonLabels", {})
    name = common.get("rule") or common.get("alertname") or "alarm"
    where = common.get("subdistrict", "")
    title = f"[{status.upper()}{':' + str(firing) if status == 'firing' else ''}] {name}" + (
        f" · {where}" if where else ""
    )
    order = ["critical", "major", "warning", "info"]
    alerts.sort(
        key=lambda a: order.index(sev) if (sev := a.get("labels", {}).get("severity")) in order
        else len(order)
    )  # fmt: skip
    blocks = []
    for a in alerts:
        labels, notes = a.get("labels", {}), a.get("annotations", {})
        icon = "✅" if a.get("status") == "resolved" else _ICON.get(labels.get("severity"), "⚪")
        head = notes.get("summary") or labels.get("alertname", "")
        block = f"{icon} **{head}**"
        if notes.get("description"):
            block += f"\n> {notes['description']}"
        link = notes.get("sensor_url") or a.get("generatorURL")
        if link:
            block += f"\n> [{labels.get('sensor') or 'details'}]({link})"
        blocks.append(block)
    return title, blocks


def _fit(title_line: str, blocks: list[str], max_bytes: int) -> str:
    """Title and as many blocks as fit in ``max_bytes``, then how many were left out."""
    text = title_line
    for i, block in enumerate(blocks):
        more = f"\n\n…and {len(blocks) - i} more"
        candidate = f"{text}\n\n{block}"
        if len((candidate + more).encode()) > max_bytes:
            return text + more
        text = candidate
    return text


def wecom_message(notification: dict[str, Any]) -> dict[str, Any]:
    title, blocks = _lines(notification)
    content = _fit(f"### {title}", blocks, WECOM_MAX_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_message(notification: dict[str, Any]) -> dict[str, Any]:
    title, blocks = _lines(notification)
    text = _fit(f"### {title}", blocks, DINGTALK_MAX_BYTES)
    return {"msgtype": "markdown", "markdown": {"title": title[:64], "text": text}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value (already URL-encoded) for ``timestamp_ms``."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def dingtalk_url(webhook: str, secret: str | None, timestamp_ms: int) -> str:
    """The robot URL with ``&timestamp=&sign=`` when the robot signs (加签)."""
    if not secret:
        return webhook
    sep = "&" if "?" in webhook else "?"
    return f"{webhook}{sep}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


def dingtalk_verify(secret: str, timestamp_ms: str, sign: str, now_ms: int) -> bool:
    """What DingTalk checks (and a test receiver does): the decoded ``sign`` query value
    matches and the timestamp is within an hour."""
    try:
        ts = int(timestamp_ms)
    except ValueError:
        return False
    if abs(now_ms - ts) > 3_600_000:
        return False
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    return hmac.compare_digest(expected, sign)
