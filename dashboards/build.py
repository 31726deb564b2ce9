"""The seven operations dashboards, generated from the catalogue, district and alarm rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, statetimeline, table
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import FieldTextAlignment, FrameGeometrySourceMode
from grafana_foundation_sdk.models.geomap import TooltipMode

from dashboards.panels import (
    JSON,
    custom_variable,
    dashboard,
    grafana_unit,
    line_chart,
    query_variable,
    style,
    target,
    thresholds,
    thresholds_from_rule,
    to_json,
    value_texts,
)
from sensornet.alarms.rules import Rule, RuleSet, load_rules
from sensornet.catalogue import Catalogue, SensorType, load_catalogue
from sensornet.district import District, load_district

STATE_STEPS: list[tuple[str, float | None]] = [
    ("green", None),
    ("yellow", 1),
    ("red", 2),
    ("gray", 3),
]
STATE_NAMES = {0: "online", 1: "stale", 2: "offline", 3: "never"}
#: worst active alarm of a sensor or subdistrict (alarms/operations_view.py SEVERITY_CODES)
ALARM_STEPS: list[tuple[str, float | None]] = [
    ("green", None),
    ("blue", 1),
    ("yellow", 2),
    ("orange", 3),
    ("red", 4),
]
ALARM_NAMES = {0: "none", 1: "info", 2: "warning", 3: "major", 4: "critical"}
LIVENESS_TOTALS = (
    'SELECT sum("online") AS "online", sum("stale") AS "stale", sum("offline") AS "offline", '
    'sum("never") AS "never" FROM (SELECT last("online") AS "online", last("stale") AS "stale", '
    'last("offline") AS "offline", last("never") AS "never" FROM "liveness_summary" '
    'WHERE $timeFilter{where} GROUP BY "subdistrict")'
)
#: the "whole city" value of the map's $area variable: no subdistrict has it, so the
#: per-sensor layer's query returns no rows at city zoom
WHOLE_CITY = "-"
#: city zoom: one row per subdistrict, however many sensors (liveness_summary)
MAP_AREAS = (
    'SELECT last("map_lat") AS "lat", last("map_lon") AS "lon", last("sensors") AS "sensors", '
    'last("online") AS "online", last("stale") AS "stale", last("offline") AS "offline", '
    'last("never") AS "never", last("alarms") AS "alarms", last("worst_alarm") AS "worst_alarm" '
    'FROM "liveness_summary" WHERE $timeFilter GROUP BY "subdistrict"'
)
#: subdistrict zoom: one row per sensor of the chosen subdistrict only
MAP_SENSORS = (
    'SELECT last("map_lat") AS "lat", last("map_lon") AS "lon", last("state_code") AS "state", '
    'last("alarm_severity") AS "alarm" FROM "sensor_liveness" '
    'WHERE $timeFilter AND "subdistrict" = \'$area\' GROUP BY "sensor_id", "type"'
)
ACTIVE_ALARMS = (
    'SELECT last("since") AS "since", last("level") AS "level", last("value") AS "value", '
    'last("acknowledged") AS "acknowledged", last("maintenance") AS "in maintenance" '
    'FROM "alarm_state" WHERE time > now() - 2m '
    'GROUP BY "sensor_id", "subdistrict", "rule", "severity"'
)


@dataclass(frozen=True)
class Basemap:
    """The map's tiles (SENSORNET_MAP_TILES_URL; '' = Grafana's default basemap)."""

    tiles_url: str = ""
    attribution: str = ""

    def layer(self) -> cb.MapLayerOptions:
        if not self.tiles_url:
            return cb.MapLayerOptions().type("default").name("Basemap")
        return (
            cb.MapLayerOptions()
            .type("xyz")
            .name("Basemap")
            .config({"url": self.tiles_url, "attribution": self.attribution})
        )


def _rule(rules: RuleSet, type_id: str, quantity: str) -> Rule | None:
    return next((r for r in rules.for_type(type_id) if r.quantity == quantity), None)


def quantity_panel(
    sensor_type: SensorType,
    quantity: str,
    rules: RuleSet,
    *,
    aggregate: str = "mean",
    subdistrict_var: bool = False,
    w: int = 12,
) -> object:
    """One quantity of one type over time, one line per subdistrict (or for $subdistrict)."""
    q = sensor_type.quantities[quantity]
    where = " AND \"subdistrict\" = '$subdistrict'" if subdistrict_var else ""
    if q.kind == "bool":  # count the readings that are true (e.g. occupied bays)
        where += f' AND "{quantity}" = true'
    query = (
        f'SELECT {aggregate}("{quantity}") FROM "{sensor_type.measurement}" '
        f'WHERE $timeFilter{where} GROUP BY time($__interval), "subdistrict" fill(none)'
    )
    rule = _rule(rules, sensor_type.id, quantity)
    return line_chart(
        f"{sensor_type.label} — {q.label} ({aggregate})",
        [target(query, alias="$tag_subdistrict")],
        unit=grafana_unit(q.unit),
        steps=thresholds_from_rule(rule),
        w=w,
        description=f"{sensor_type.label_zh} · {q.label} [{q.unit}]"
        + (f" · thresholds: alarm rule {rule.id}" if rule else ""),
    )


def _numeric(sensor_type: SensorType) -> list[str]:
    return [q.id for q in sensor_type.quantities.values() if q.kind in ("float", "int")]


def _markers(name: str, ref: str, colour_field: str, size: int) -> cb.MapLayerOptions:
    """A markers layer drawing query ``ref``'s rows at their lat/lon."""
    location = (
        cb.FrameGeometrySource().mode(FrameGeometrySourceMode.COORDS).latitude("lat")
        .longitude("lon")
    )  # fmt: skip
    return (
        cb.MapLayerOptions()
        .type("markers")
        .name(name)
        .location(location)
        .filter_data({"id": "byRefId", "options": ref})
        .tooltip(True)
        .config({
            "showLegend": True,
            "style": {"color": {"field": colour_field}, "size": {"fixed": size},
                      "opacity": 0.8},
        })
    )  # fmt: skip


def city_map(district: District, basemap: Basemap) -> geomap.Panel:
    """City zoom: one marker per subdistrict (query A, liveness_summary), coloured by its
    worst active alarm, with its counts by liveness in the tooltip; the sensors of the
    subdistrict chosen in $area (query B) only when one is chosen. What the browser gets
    never grows with the fleet at city zoom (tests/test_dashboards_map.py)."""
    lon = (district.bbox[0] + district.bbox[2]) / 2
    lat = (district.bbox[1] + district.bbox[3]) / 2
    view = geomap.MapViewConfig().id("coords").zoom(13)
    built = view.build()  # the SDK types lat/lon as int (Grafana's schema says int64)
    built.lat, built.lon = lat, lon  # type: ignore[assignment]
    p = (
        geomap.Panel()
        .view(view)
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .tooltip(geomap.TooltipOptions().mode(TooltipMode.DETAILS))
        .basemap(basemap.layer())
        .layers([
            _markers("subdistricts (worst alarm)", "A", "worst_alarm", 14),
            _markers("sensors of the chosen area (liveness)", "B", "state", 5),
        ])
    )  # fmt: skip
    return style(
        p,
        "Map: subdistricts, and the sensors of $area",
        [target(MAP_AREAS, "A", fmt="table"), target(MAP_SENSORS, "B", fmt="table")],
        steps=thresholds(ALARM_STEPS),
        w=16,
        h=18,
        description="Big markers: one per subdistrict, colour = worst active alarm (green "
        "none, blue info, yellow warning, orange major, red critical); hover for counts by "
        "liveness. Choose a subdistrict in 'Area' for its sensors (colour = liveness: green "
        "online, yellow stale, red offline, grey never). Positions from the registry, "
        "written by the alarm runner in the basemap's coordinate system (SENSORNET_MAP_CRS).",
    ).override_by_name("state", [
        dm.DynamicConfigValue(id_val="thresholds", value=thresholds(STATE_STEPS).build()),
    ])  # fmt: skip


def _table() -> table.Panel:
    """A table with its field options set (the defaults Grafana's schema gives them)."""
    return table.Panel().align(FieldTextAlignment.AUTO).inspect(False)


def active_alarms_table() -> table.Panel:
    return style(
        _table(),
        "Active alarms",
        [target(ACTIVE_ALARMS, fmt="table")],
        w=24,
        h=8,
        description="Every active alarm: sensor, subdistrict, rule, severity, raised at "
        "(since, UTC), acknowledged, and whether a maintenance window covers the sensor "
        "(its notifications are silenced; the alarm is still recorded).",
    )


def city_overview(district: District, basemap: Basemap | None = None) -> db.Dashboard:
    area = custom_variable(
        "area",
        "Area",
        [("Whole city (subdistricts only)", WHOLE_CITY)]
        + [(f"{a.name_zh} {a.name_en}", a.id) for a in district.subdistricts.values()],
    )
    counts = style(
        stat.Panel(),
        "Sensors online / stale / offline",
        [target(LIVENESS_TOTALS.format(where=""), fmt="table")],
        w=8,
        h=6,
    )
    alarm_counts = style(
        stat.Panel(),
        "Active alarms by severity",
        [target('SELECT last("count") FROM "alarms_active" WHERE $timeFilter '
                'GROUP BY "severity"', alias="$tag_severity")],
        steps=thresholds([("green", None), ("red", 1)]),
        w=8,
        h=6,
    )  # fmt: skip
    # sensors whose notifications a maintenance window silences (docs/alerting.md)
    maintenance = style(
        _table(),
        "Sensors in maintenance",
        [target('SELECT last("state") AS "state", last("alarm_severity") AS "alarm" '
                'FROM "sensor_liveness" WHERE time > now() - 2m AND "maintenance" = true '
                'GROUP BY "sensor_id", "subdistrict"', fmt="table")],
        w=8,
        h=6,
    )  # fmt: skip
    # the map on the left, the three small panels stacked beside it, the alarms below:
    # placed by hand, the SDK's left-to-right flow would put them in one row under the map
    placed: list[tuple[Any, int, int]] = [
        (city_map(district, basemap or Basemap()), 0, 0),
        (counts, 16, 0),
        (alarm_counts, 16, 6),
        (maintenance, 16, 12),
        (active_alarms_table(), 0, 18),
    ]
    panels = [p.grid_pos(_at(p, x, y)) for p, x, y in placed]
    return dashboard(
        "sn-city", f"{district.name_en} — City overview", panels,
        variables=[area], tags=["overview"],
    )  # fmt: skip


def _at(p: Any, x: int, y: int) -> dm.GridPos:
    size = p.build().grid_pos
    return dm.GridPos(h=size.h, w=size.w, x=x, y=y)


def subdistrict(catalogue: Catalogue, district: District, rules: RuleSet) -> db.Dashboard:
    variable = custom_variable(
        "subdistrict",
        "Subdistrict",
        [(f"{a.name_zh} {a.name_en}", a.id) for a in district.subdistricts.values()],
    )
    panels: list[object] = [
        style(
            stat.Panel(),
            "Sensors online / stale / offline",
            [
                target(
                    LIVENESS_TOTALS.format(where=" AND \"subdistrict\" = '$subdistrict'"),
                    fmt="table",
                )
            ],
            w=24,
            h=4,
        )
    ]
    for sensor_type in catalogue.types.values():
        numeric = _numeric(sensor_type)
        if numeric:
            panels.append(quantity_panel(sensor_type, numeric[0], rules, subdistrict_var=True, w=8))
    return dashboard("sn-subdistrict", "Subdistrict", panels, variables=[variable],
                     tags=["subdistrict"])  # fmt: skip


def sensor_detail(catalogue: Catalogue) -> db.Dashboard:
    type_var = custom_variable(
        "type", "Sensor type", [(f"{t.label_zh} {t.label}", t.id) for t in catalogue.types.values()]
    )
    sensor_var = query_variable(
        "sensor", "Sensor", 'SHOW TAG VALUES FROM "$type" WITH KEY = "sensor_id"'
    )
    readings = line_chart(
        "Readings (numeric quantities)",
        [
            target(
                'SELECT mean(*) FROM "$type" WHERE "sensor_id" = \'$sensor\' AND $timeFilter '
                "GROUP BY time($__interval) fill(none)"
            )
        ],
        w=24,
        h=10,
        description="Units per quantity: see the catalogue (API /latest gives them).",
    )
    liveness = style(
        statetimeline.Panel().fill_opacity(70).line_width(0),
        "Liveness",
        [
            target(
                'SELECT last("state_code") AS "liveness" FROM "sensor_liveness" '
                "WHERE \"sensor_id\" = '$sensor' AND $timeFilter GROUP BY time($__interval) "
                "fill(none)"
            )
        ],
        steps=thresholds(STATE_STEPS),
        mappings=value_texts(STATE_NAMES),
        w=12,
        h=6,
    )
    rejects = line_chart(
        "Rejected readings by reason",
        [
            target(
                'SELECT count("payload_bytes") FROM "dead_letter" WHERE "device" = \'$sensor\' '
                'AND $timeFilter GROUP BY time($__interval), "reason" fill(none)',
                alias="$tag_reason",
            )
        ],
        w=12,
        h=6,
    )
    return dashboard("sn-sensor", "Sensor detail", [readings, liveness, rejects],
                     variables=[type_var, sensor_var], tags=["sensor"])  # fmt: skip


def theme(
    uid: str, title: str, catalogue: Catalogue, rules: RuleSet,
    picks: list[tuple[str, str, str]],
) -> db.Dashboard:  # fmt: skip
    """A theme dashboard: (type, quantity, aggregate) panels, one line per subdistrict."""
    panels = [quantity_panel(catalogue.get(t), q, rules, aggregate=a) for t, q, a in picks]
    return dashboard(uid, title, panels, tags=["theme"])


def platform_health() -> db.Dashboard:
    def ts(title: str, query: str, unit: str = "short", alias: str = "$tag_ingester") -> object:
        return line_chart(title, [target(query, alias=alias)], unit=unit, w=8)

    group = 'GROUP BY time($__interval), "ingester" fill(none)'
    panels = [
        ts("Ingest rate (stored readings/s)",
           f'SELECT non_negative_derivative(last("stored"), 1s) FROM "platform_ingest" '
           f"WHERE $timeFilter {group}", "reqps"),
        ts("Lag arrival → stored",
           f'SELECT max("lag_ms") FROM "platform_ingest" WHERE $timeFilter {group}', "ms"),
        ts("Batch write latency",
           f'SELECT mean("batch_latency_ms") FROM "platform_ingest" WHERE $timeFilter {group}',
           "ms"),
        ts("Rejected readings by reason",
           'SELECT non_negative_difference(last("count")) FROM "platform_rejects" WHERE '
           '$timeFilter GROUP BY time($__interval), "reason" fill(none)', "short", "$tag_reason"),
        ts("Spool depth (readings)",
           f'SELECT last("spool_readings") FROM "platform_ingest" WHERE $timeFilter {group}'),
        ts("Spool size",
           f'SELECT last("spool_bytes") FROM "platform_ingest" WHERE $timeFilter {group}',
           "bytes"),
        ts("Payload waiting for a batch (backpressure)",
           f'SELECT max("pending_bytes") FROM "platform_ingest" WHERE $timeFilter {group}',
           "bytes"),
        ts("InfluxDB write errors",
           f'SELECT non_negative_difference(last("write_errors")) FROM "platform_ingest" '
           f"WHERE $timeFilter {group}"),
        ts("Dead letters by reason",
           'SELECT count("payload_bytes") FROM "dead_letter" WHERE $timeFilter '
           'GROUP BY time($__interval), "reason" fill(none)', "short", "$tag_reason"),
        style(stat.Panel(), "Sensors online / stale / offline",
              [target(LIVENESS_TOTALS.format(where=""), fmt="table")], w=8),
    ]  # fmt: skip
    return dashboard("sn-platform", "Platform health", panels, tags=["platform"])


def build_models(
    catalogue: Catalogue | None = None,
    district: District | None = None,
    rules: RuleSet | None = None,
    basemap: Basemap | None = None,
) -> dict[str, db.Dashboard]:
    """Every dashboard, as SDK builders, by uid."""
    catalogue, district, rules = (
        catalogue or load_catalogue(),
        district or load_district(),
        rules or load_rules(),
    )
    boards = {
        "sn-city": city_overview(district, basemap),
        "sn-subdistrict": subdistrict(catalogue, district, rules),
        "sn-sensor": sensor_detail(catalogue),
        "sn-air-noise": theme("sn-air-noise", "Air & noise", catalogue, rules, [
            ("air_quality", "pm25", "mean"), ("air_quality", "pm10", "mean"),
            ("air_quality", "no2", "mean"), ("air_quality", "o3", "mean"),
            ("air_quality", "co", "mean"), ("noise", "laeq", "mean"),
        ]),
        "sn-water": theme("sn-water", "Water & drainage", catalogue, rules, [
            ("waterlogging", "depth", "max"), ("river_level", "level", "max"),
            ("water_quality", "do", "min"), ("water_quality", "ph", "mean"),
            ("water_quality", "turbidity", "mean"), ("water_quality", "nh3n", "mean"),
            ("hydrant", "pressure", "min"), ("weather", "rain", "max"),
        ]),
        "sn-traffic": theme("sn-traffic", "Traffic & parking", catalogue, rules, [
            ("traffic_flow", "count", "sum"), ("traffic_flow", "mean_speed", "mean"),
            ("parking", "occupied", "count"),
        ]),
        "sn-platform": platform_health(),
    }  # fmt: skip
    return boards


def build_dashboards(
    catalogue: Catalogue | None = None,
    district: District | None = None,
    rules: RuleSet | None = None,
    basemap: Basemap | None = None,
) -> dict[str, JSON]:
    """Every dashboard by uid, as the JSON Grafana reads (the SDK's serialisation)."""
    out: dict[str, JSON] = {}
    for uid, board in build_models(catalogue, district, rules, basemap).items():
        out[uid] = to_json(board.build())
    return out
