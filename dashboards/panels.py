"""Small helpers over grafana-foundation-sdk's typed builders (panels, InfluxQL targets,
thresholds from alarm rules, variables) and the one place SDK objects become JSON.

The builders are Grafana's own (generated from Grafana's schemas); these helpers only
hold the project's conventions: one data source, units from the catalogue, threshold
colours from the alarm rules' severities."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from dashboards.influxql import Influx
from sensornet.alarms.rules import Rule

JSON = dict[str, Any]
DATASOURCE = {"type": "influxdb", "uid": "sensornet-influx"}
DATASOURCE_REF = dm.DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])
SEVERITY_COLOURS = {"info": "blue", "warning": "yellow", "major": "orange", "critical": "red"}

Panel = TypeVar(
    "Panel", timeseries.Panel, stat.Panel, table.Panel, geomap.Panel, statetimeline.Panel
)

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


def to_json(obj: object) -> Any:
    """An SDK object (dashboard, rule, contact point …) as plain JSON data, through the
    SDK's own encoder (each model's ``to_json``)."""
    return json.loads(JSONEncoder().encode(obj))


def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str = "") -> Influx:
    out = Influx().ref_id(ref).query(query).datasource(DATASOURCE_REF)
    if fmt == "table":
        out = out.table()
    if alias:
        out = out.alias(alias)
    return out


def thresholds(steps: list[tuple[str, float | None]]) -> db.ThresholdsConfig:
    """(colour, value) steps, the first with ``None`` (Grafana's "base")."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for c, v in steps])
    )


def thresholds_from_rule(rule: Rule | None) -> db.ThresholdsConfig:
    """Grafana thresholds (ascending steps) from an alarm rule's levels: green below the
    first level for ``above`` rules; for ``below`` rules the colours run the other way."""
    steps: list[tuple[str, float | None]] = [("green", None)]
    if rule is None or rule.op == "is_true":
        return thresholds(steps)
    levels = rule.thresholds.levels
    if rule.op == "above":
        steps += [(SEVERITY_COLOURS[lv.severity], lv.threshold) for lv in levels]
    else:
        ordered = list(reversed(levels))  # most severe (lowest) first
        steps = [(SEVERITY_COLOURS[ordered[0].severity], None)]
        for lower, upper in zip(ordered, [*ordered[1:], None], strict=True):
            steps.append((SEVERITY_COLOURS[upper.severity] if upper else "green", lower.threshold))
    return thresholds(steps)


def value_texts(names: dict[int, str]) -> list[dm.ValueMapping]:
    """Show codes as words (liveness 0 → online …)."""
    return [
        dm.ValueMap(options={str(code): dm.ValueMappingResult(text=name, index=code)})
        for code, name in names.items()
    ]


def style(
    p: Panel,
    title: str,
    targets: list[Influx],
    *,
    unit: str = "none",
    steps: db.ThresholdsConfig | None = None,
    w: int = 12,
    h: int = 8,
    description: str = "",
    mappings: list[dm.ValueMapping] | None = None,
) -> Panel:
    """What every panel of ours sets: title, data source, targets, unit, thresholds, size."""
    p = (
        p.title(title)
        .description(description)
        .datasource(DATASOURCE_REF)
        .targets(list(targets))
        .unit(unit)
        .thresholds(steps or thresholds([("green", None)]))
        .span(w)
        .height(h)
    )
    if mappings:
        p = p.mappings(mappings)
    return p


def line_chart(title: str, targets: list[Influx], **kw: Any) -> timeseries.Panel:
    """A time series with the thresholds drawn as lines and gaps bridged."""
    p = timeseries.Panel().span_nulls(True)
    p = p.thresholds_style(cb.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE))
    return style(p, title, targets, **kw)


def custom_variable(name: str, label: str, options: list[tuple[str, str]]) -> db.CustomVariable:
    """A single-valued variable; ``options`` are (text, value), the first selected."""
    text, value = options[0]
    return (
        db.CustomVariable(name)
        .label(label)
        .values(",".join(f"{t} : {v}" for t, v in options))
        .current(dm.VariableOption(selected=True, text=text, value=value))
        .options(
            [
                dm.VariableOption(selected=i == 0, text=t, value=v)
                for i, (t, v) in enumerate(options)
            ]
        )
        .multi(False)
        .include_all(False)
    )


def query_variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE_REF)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(False)
        .include_all(False)
    )


def dashboard(
    uid: str,
    title: str,
    panels: list[Any],
    *,
    variables: list[Any] | None = None,
    tags: list[str] | None = None,
    refresh: str = "30s",
    time_from: str = "now-6h",
) -> db.Dashboard:
    """The SDK lays panels out left to right, top to bottom; ids are numbered here."""
    board = (
        db.Dashboard(title)
        .uid(uid)
        .tags(["sensornet", *(tags or [])])
        .timezone("browser")
        .editable()
        .refresh(refresh)
        .time(time_from, "now")
        .version(1)
    )
    for i, p in enumerate(panels, start=1):
        board = board.with_panel(p.id(i))
    for v in variables or []:
        board = board.with_variable(v)
    return board
