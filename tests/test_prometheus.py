"""Platform-health alerts: the shipped Prometheus rules pass promtool's unit tests
(tests/data/prometheus_alerts_test.yml: each alert fires when it should, with its labels
and text), and a real Prometheus scraping a real alarm runner's /metrics sends an offline
sensor through the same Alertmanager to a receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alert_receivers import http_receiver
from prometheus_client import CollectorRegistry
from support import wait_until

from alarms.metrics import RunnerCollector, RunnerHealth, serve_metrics
from sensornet.errors import ConfigError
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.alerting import Prometheus, alertmanager_service, check_tool
from wiring.services import free_port

RULES = Path(__file__).parent.parent / "wiring" / "prometheus_alerts.yml"
RULE_TESTS = Path(__file__).parent / "data" / "prometheus_alerts_test.yml"


def test_shipped_rules_pass_their_unit_tests(tmp_path: Path) -> None:
    tests = tmp_path / "tests.yml"
    tests.write_text(RULE_TESTS.read_text().replace("RULES", str(RULES)))
    assert "SUCCESS" in check_tool("promtool", "test", "rules", str(tests))


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the same file expecting another severity does."""
    tests = tmp_path / "tests.yml"
    text = RULE_TESTS.read_text().replace("RULES", str(RULES))
    tests.write_text(
        text.replace("{severity: warning, sensor: NS-7", "{severity: info, sensor: NS-7")
    )
    with pytest.raises(ConfigError, match="SensornetSensorOffline"):
        check_tool("promtool", "test", "rules", str(tests))


def _health() -> RunnerHealth:
    devices = [
        DeviceInfo("NS-7", "noise", "jingansi", 31.22, 121.44, "active"),
        DeviceInfo("NS-8", "noise", "jingansi", 31.22, 121.44, "active"),
    ]
    return RunnerHealth(devices=devices, states={"NS-7": "offline", "NS-8": "online"})


async def test_prometheus_scrapes_the_runner_and_alerts_through_alertmanager(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RunnerCollector(_health()))
    metrics_port = free_port()
    with http_receiver() as hook, serve_metrics(registry, metrics_port):
        routing = tmp_path / "routing.yaml"
        routing.write_text(yaml.safe_dump({
            "version": 1, "group_wait": "200ms", "group_interval": "1s", "repeat_interval": "1h",
            "receivers": {"hook": {"webhook": {"url": f"{hook.url}/hook"}}},
            "default": ["hook"],
        }))  # fmt: skip
        settings = Settings(
            state_dir=tmp_path,
            alertmanager_url=f"http://127.0.0.1:{free_port()}",
            alert_routing_file=routing,
            _env_file=None,  # type: ignore[call-arg]
        )
        am = alertmanager_service(settings, home=tmp_path / "am")
        prometheus = Prometheus(
            name="prometheus",
            home=tmp_path / "prometheus",
            port=free_port(),
            targets={"sensornet-alarms": [f"127.0.0.1:{metrics_port}"]},
            alertmanagers=[f"127.0.0.1:{am.port}"],
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        am.start()
        try:
            prometheus.start()
            try:

                def offline() -> list[dict[str, Any]]:
                    return [
                        a
                        for n in hook.bodies("/hook")
                        for a in n["alerts"]
                        if a["labels"]["alertname"] == "SensornetSensorOffline"
                    ]

                async def told() -> list[dict[str, Any]]:
                    return offline()

                (alert, *_) = await wait_until(told, timeout_s=30)
                assert alert["labels"]["sensor"] == "NS-7"
                assert alert["labels"]["job"] == "sensornet-alarms"
                assert {a["labels"]["sensor"] for a in offline()} == {"NS-7"}  # NS-8 is fine
                async with httpx.AsyncClient(base_url=prometheus.url) as http:
                    targets = (await http.get("/api/v1/targets")).json()["data"]
                    assert [t["health"] for t in targets["activeTargets"]] == ["up"]
            finally:
                prometheus.stop()
        finally:
            am.stop()


def test_prometheus_refuses_a_broken_rule_file(tmp_path: Path) -> None:
    bad = Prometheus(name="prometheus", home=tmp_path, port=free_port(),
                     rules="groups: [{name: x, rules: [{alert: A, expr: 'up =='}]}]")  # fmt: skip
    with pytest.raises(ConfigError, match="promtool check rules"):
        bad.start()
    assert not bad.running()
