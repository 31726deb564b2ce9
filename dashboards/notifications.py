"""Grafana's notification provisioning: one contact point, the platform's Alertmanager,
and a notification policy that sends every Grafana-managed alert to it. Grafana does no
routing of its own: grouping, repeats, silences (acknowledged alarms, maintenance windows)
and the receivers are the routing file's, in Alertmanager (docs/alerting.md), so an alert
reaches the same people whether the alarm runner, Prometheus or Grafana raised it."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.models import alerting as am

from dashboards.panels import to_json

CONTACT_POINT = "sensornet-alertmanager"
#: Grafana's integration type for an external Alertmanager. The SDK's ``ContactPoint.type``
#: lists "alertmanager", which Grafana refuses ("notifier alertmanager is not supported",
#: grafana/grafana-operator#1548): the type Grafana registers is "prometheus-alertmanager".
ALERTMANAGER_TYPE = "prometheus-alertmanager"


def contact_point(alertmanager_url: str) -> am.ContactPoint:
    point = (
        ab.ContactPoint()
        .uid("sensornet-am")
        .name(CONTACT_POINT)
        .settings({"url": alertmanager_url.rstrip("/")})
        .disable_resolve_message(False)
        .build()
    )
    point.type_val = ALERTMANAGER_TYPE  # type: ignore[assignment]  # see ALERTMANAGER_TYPE
    return point


def notification_policy() -> am.NotificationPolicy:
    return (
        ab.NotificationPolicy()
        .receiver(CONTACT_POINT)
        # each alert on its own, at once: Alertmanager groups and deduplicates
        .group_by(["..."])
        .group_wait("0s")
        .group_interval("1m")
        # below Alertmanager's resolve_timeout (5m), so a firing alert stays firing
        .repeat_interval("1m")
        .build()
    )


def notification_provisioning(alertmanager_url: str) -> dict[str, Any]:
    """Grafana's alerting provisioning file (contactPoints + policies, apiVersion 1): the
    SDK's contact point (the HTTP API's shape) becomes a receiver of the file's contact
    point; the SDK's policy is the file's policy tree as is."""
    receiver = to_json(contact_point(alertmanager_url))
    name = receiver.pop("name")
    return {
        "apiVersion": 1,
        "contactPoints": [{"orgId": 1, "name": name, "receivers": [receiver]}],
        "policies": [{"orgId": 1} | to_json(notification_policy())],
    }
