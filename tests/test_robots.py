"""WeCom and DingTalk robot messages built from an Alertmanager notification: within the
robots' size limits however many alerts a group holds, and DingTalk's signature as its
documentation computes it (checked here without alarms.robots' own signing code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from typing import Any

from alarms.robots import dingtalk_message, dingtalk_url, dingtalk_verify, wecom_message


def notification(n: int) -> dict[str, Any]:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "SensorAlarm", "sensor": f"WL-{i}", "severity": sev},
            "annotations": {
                "summary": f"WL-{i} depth impassable 积水",
                "description": "depth = 31.5 (threshold 25) at WL-1 (waterlogging, jingansi)",
                "sensor_url": f"http://ops.example/sensors/WL-{i}/view",
            },
        }
        for i, sev in zip(range(n), ["warning", "critical"] * n, strict=False)
    ]
    return {"status": "firing", "alerts": alerts,
            "commonLabels": {"rule": "waterlogging_depth", "subdistrict": "jingansi"}}  # fmt: skip


def test_wecom_markdown_fits_4096_bytes_and_says_what_was_left_out() -> None:
    small = wecom_message(notification(2))
    assert small["msgtype"] == "markdown"
    content = small["markdown"]["content"]
    assert content.startswith("### [FIRING:2] waterlogging_depth · jingansi")
    assert content.index("WL-1") < content.index("WL-0")  # critical first
    big = wecom_message(notification(200))["markdown"]["content"]
    assert len(big.encode()) <= 4096 and big.endswith("more")


def test_dingtalk_markdown_and_resolved() -> None:
    done = notification(1) | {"status": "resolved"}
    done["alerts"][0]["status"] = "resolved"
    msg = dingtalk_message(done)
    assert msg["msgtype"] == "markdown" and msg["markdown"]["title"].startswith("[RESOLVED]")
    assert "✅" in msg["markdown"]["text"]
    assert len(dingtalk_message(notification(2000))["markdown"]["text"].encode()) <= 20_000


def test_dingtalk_signature_as_documented() -> None:
    secret, ts = "SECabc", 1_700_000_000_000
    url = dingtalk_url("https://oapi.dingtalk.com/robot/send?access_token=T", secret, ts)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    assert query == {"access_token": "T", "timestamp": str(ts), "sign": expected}
    assert dingtalk_verify(secret, str(ts), expected, ts + 1000)
    assert not dingtalk_verify(secret, str(ts), expected, ts + 3_600_001)  # stale
    assert not dingtalk_verify("SECother", str(ts), expected, ts)
    assert (
        dingtalk_url("https://x/send?access_token=T", None, ts) == "https://x/send?access_token=T"
    )
