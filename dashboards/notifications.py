"""Grafana's notification provisioning: one contact point, the platform's Alertmanager,
and a notification policy that sends every Grafana-managed alert to it. Grafana does no
routing of its own: grouping, repeats, silences (acknowledged alarms, maintenance windows)
and the receivers are the routing file's, in Alertmanager (docs/alerting.md), so an alert
reaches the same people whether the alarm runner, Prometheus or Grafana raised it."""

from __future__ import annotations

from typing import Any

CONTACT_POINT = "sensornet-alertmanager"


def notification_provisioning(alertmanager_url: str) -> dict[str, Any]:
    """Grafana's alerting provisioning file (contactPoints + policies, apiVersion 1)."""
    return {
        "apiVersion": 1,
        "contactPoints": [
            {
                "orgId": 1,
                "name": CONTACT_POINT,
                "receivers": [
                    {
                        "uid": "sensornet-am",
                        "type": "prometheus-alertmanager",
                        "settings": {"url": alertmanager_url.rstrip("/")},
                        "disableResolveMessage": False,
                    }
                ],
            }
        ],
        "policies": [
            {
                "orgId": 1,
                "receiver": CONTACT_POINT,
                # each alert on its own, at once: Alertmanager groups and deduplicates
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1m",
                # below Alertmanager's resolve_timeout (5m), so a firing alert stays firing
                "repeat_interval": "1m",
            }
        ],
    }
