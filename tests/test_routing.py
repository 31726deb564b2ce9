"""The routing file: the shipped default is valid for Alertmanager 0.25 (``amtool
check-config`` on what the project generates), bad files are clear errors naming the field,
and the generated route tree sends each alarm to every route that matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alarms.routing import Delivery, alertmanager_config, load_routing, parse_routing
from sensornet.errors import ConfigError
from wiring.alerting import check_tool

DELIVERY = Delivery(
    relay_url="http://127.0.0.1:9097",
    smtp_smarthost="mail.example.org:587",
    smtp_from="sensornet@example.org",
    smtp_user="sensornet",
    secret_files={"smtp.password": "/run/sensornet/smtp.password"},
)

EXAMPLE: dict[str, Any] = {
    "version": 1,
    "receivers": {
        "duty-mail": {"email": {"to": ["ops@example.org", "lead@example.org"]}},
        "city-ops": {"webhook": {"url": "https://ops.example.org/hooks/sensornet"}},
        "jingansi-wecom": {"wecom": None},
        "district-ding": {"dingtalk": {}, "send_resolved": False},
    },
    "routes": [
        {"match": {"subdistrict": "jingansi"}, "receivers": ["jingansi-wecom"]},
        {
            "match": {"severity": ["major", "critical"]},
            "receivers": ["duty-mail", "district-ding"],
            "repeat_interval": "1h",
        },
    ],
    "default": ["city-ops"],
    "inhibit": [
        {"source": {"severity": "critical"}, "target": {"severity": "warning"}, "equal": ["sensor"]}
    ],
}


def check(config: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return check_tool("amtool", "check-config", str(path))


def test_shipped_default_is_a_valid_alertmanager_configuration(tmp_path: Path) -> None:
    out = check(alertmanager_config(load_routing(), DELIVERY), tmp_path)
    assert "SUCCESS" in out


def test_example_routes_every_match_and_keeps_secrets_out(tmp_path: Path) -> None:
    routing = parse_routing(EXAMPLE)
    config = alertmanager_config(routing, DELIVERY)
    assert "SUCCESS" in check(config, tmp_path)
    routes = config["route"]["routes"]
    assert [r["matchers"] for r in routes] == [
        ['subdistrict="jingansi"'],
        ['severity=~"major|critical"'],
    ]
    assert all(r["continue"] for r in routes) and routes[1]["repeat_interval"] == "1h"
    receivers = {r["name"]: r for r in config["receivers"]}
    severe = receivers[routes[1]["receiver"]]
    assert severe["email_configs"][0]["to"] == "ops@example.org, lead@example.org"
    # DingTalk goes through the relay, which holds its URL and secret
    assert severe["webhook_configs"] == [
        {"url": "http://127.0.0.1:9097/robot/district-ding", "send_resolved": False}
    ]
    assert receivers[config["route"]["receiver"]]["webhook_configs"][0]["url"] == (
        "https://ops.example.org/hooks/sensornet"
    )
    assert config["global"]["smtp_auth_password_file"] == "/run/sensornet/smtp.password"
    assert config["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["sensor"],
        }
    ]
    assert sorted(routing.secrets_needed()) == [
        "district-ding.secret", "district-ding.url", "jingansi-wecom.url",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version: 1"),
        ({"receivers": {}}, "receivers: at least one"),
        ({"receivers": {"Bad Name": {"email": {"to": ["a@b.c"]}}}}, "names are lower-case"),
        ({"receivers": {"x": {"sms": {}}}}, "exactly one kind"),
        ({"receivers": {"x": {"email": {"to": ["not-an-address"]}}}}, r"receivers\.x\.email\.to"),
        ({"receivers": {"x": {"webhook": {"url": "ftp://x"}}}}, r"webhook\.url"),
        ({"receivers": {"x": {"wecom": {"url": "https://qyapi"}}}}, "secrets"),
        ({"default": ["nobody"]}, r"default: unknown receivers \['nobody'\]"),
        ({"routes": [{"match": {}, "receivers": ["city-ops"]}]}, r"routes\[0\]\.match"),
        ({"routes": [{"match": {"a": "b"}, "receivers": ["x"]}]}, r"routes\[0\]\.receivers"),
        (
            {
                "routes": [
                    {"match": {"a": "b"}, "receivers": ["city-ops"], "repeat_interval": "2 hours"}
                ]
            },
            "not a duration",
        ),
        ({"group_wait": "soon"}, "group_wait"),
        ({"inhibit": [{"source": {"1x": "y"}, "target": {"a": "b"}}]}, "not a label name"),
    ],
)
def test_bad_routing_is_a_clear_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_routing(EXAMPLE | change)


def test_bad_routing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_routing(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("receivers: [unclosed")
    with pytest.raises(ConfigError, match="not YAML"):
        load_routing(broken)


def test_receivers_secrets_setting_is_checked_without_echoing_it() -> None:
    from sensornet.settings import Settings

    assert Settings(alert_secrets="", _env_file=None).alert_secret_names() == {}  # type: ignore[arg-type,call-arg]
    for bad in ('["hunter2"]', '{"a": 1}', "hunter2"):
        settings = Settings(alert_secrets=bad, _env_file=None)  # type: ignore[arg-type,call-arg]
        with pytest.raises(ConfigError, match="JSON object of strings") as caught:
            settings.alert_secret_names()
        assert "hunter2" not in str(caught.value) and "hunter2" not in repr(settings)
    good = Settings(alert_secrets='{"x.url": "u"}', _env_file=None)  # type: ignore[arg-type,call-arg]
    assert good.alert_secret("x.url") == "u"
    with pytest.raises(ConfigError, match=r"'y\.url' is missing"):
        good.alert_secret("y.url")
