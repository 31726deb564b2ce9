"""Small builders for Grafana JSON (dashboards, panels, InfluxQL targets, variables).

Plain dicts: the JSON is what Grafana reads, and ``schema.json`` checks its shape."""

from __future__ import annotations

from typing import Any

from sensornet.alarms.rules import Rule

JSON = dict[str, Any]
DATASOURCE = {"type": "influxdb", "uid": "sensornet-influx"}
SEVERITY_COLOURS = {"info": "blue", "warning": "yellow", "major": "orange", "critical": "red"}

# Catalogue units → Grafana unit ids; anything else is shown with Grafana's "suffix:".
_UNITS = {
    "µg/m³": "conμgm3",
    "mg/m³": "conmgm3",
    "dB(A)": "dBA",
    "°C": "celsius",
    "%": "percent",
    "hPa": "pressurehpa",
    "m/s": "velocityms",
    "km/h": "velocitykmh",
    "W": "watt",
    "m": "lengthm",
    "°": "degree",
    "count": "short",
}


def grafana_unit(unit: str) -> str:
    if not unit:
        return "none"
    return _UNITS.get(unit, f"suffix: {unit}")


def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str = "") -> JSON:
    out: JSON = {
        "refId": ref,
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": fmt,
    }
    if alias:
        out["alias"] = alias
    return out


def thresholds_from_rule(rule: Rule | None) -> JSON:
    """Grafana thresholds (ascending steps) from an alarm rule's levels: green below the
    first level for ``above`` rules; for ``below`` rules the colours run the other way."""
    steps: list[JSON] = [{"color": "green", "value": None}]
    if rule is None or rule.op == "is_true":
        return {"mode": "absolute", "steps": steps}
    levels = rule.thresholds.levels
    if rule.op == "above":
        steps += [{"color": SEVERITY_COLOURS[lv.severity], "value": lv.threshold} for lv in levels]
    else:
        ordered = list(reversed(levels))  # most severe (lowest) first
        steps = [{"color": SEVERITY_COLOURS[ordered[0].severity], "value": None}]
        for lower, upper in zip(ordered, [*ordered[1:], None], strict=True):
            colour = SEVERITY_COLOURS[upper.severity] if upper else "green"
            steps.append({"color": colour, "value": lower.threshold})
    return {"mode": "absolute", "steps": steps}


def panel(
    title: str,
    kind: str,
    targets: list[JSON],
    *,
    unit: str = "none",
    thresholds: JSON | None = None,
    w: int = 12,
    h: int = 8,
    options: JSON | None = None,
    description: str = "",
    decimals: int | None = None,
    mappings: list[JSON] | None = None,
) -> JSON:
    defaults: JSON = {
        "unit": unit,
        "thresholds": thresholds
        or {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
        "mappings": mappings or [],
    }
    if kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}, "spanNulls": True}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "gridPos": {"x": 0, "y": 0, "w": w, "h": h},
    }


def custom_variable(name: str, label: str, options: list[tuple[str, str]]) -> JSON:
    """A single-valued variable; ``options`` are (text, value)."""
    text, value = options[0]
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(f"{t} : {v}" for t, v in options),
        "current": {"text": text, "value": value},
        "options": [
            {"text": t, "value": v, "selected": i == 0} for i, (t, v) in enumerate(options)
        ],
        "multi": False,
        "includeAll": False,
        "hide": 0,
    }


def query_variable(name: str, label: str, query: str) -> JSON:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "current": {},
        "options": [],
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "sort": 1,
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[JSON],
    *,
    variables: list[JSON] | None = None,
    tags: list[str] | None = None,
    refresh: str = "30s",
    time_from: str = "now-6h",
) -> JSON:
    """Assign ids and lay panels out left to right, top to bottom."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        pos = p["gridPos"]
        if x + pos["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        row_h = max(row_h, pos["h"])
    return {
        "uid": uid,
        "title": title,
        "tags": ["sensornet", *(tags or [])],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "panels": panels,
    }
