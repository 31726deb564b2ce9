"""Grafana dashboards as code: generated from the catalogue, the district and the alarm
rules, with provisioning files and a push through the Grafana HTTP API."""
