"""Grafana dashboards as code (see issue: operations view)."""
