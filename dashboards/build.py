"""The seven operations dashboards, generated from the catalogue, district and alarm rules."""

from __future__ import annotations

from dashboards.panels import (
    JSON,
    custom_variable,
    dashboard,
    grafana_unit,
    panel,
    query_variable,
    target,
    thresholds_from_rule,
)
from sensornet.alarms.rules import Rule, RuleSet, load_rules
from sensornet.catalogue import Catalogue, SensorType, load_catalogue
from sensornet.district import District, load_district

STATE_THRESHOLDS = {
    "mode": "absolute",
    "steps": [
        {"color": "green", "value": None},
        {"color": "yellow", "value": 1},
        {"color": "red", "value": 2},
        {"color": "gray", "value": 3},
    ],
}
STATE_MAPPINGS = [
    {"type": "value", "options": {str(code): {"text": name, "index": code}}}
    for code, name in enumerate(("online", "stale", "offline", "never"))
]
LIVENESS_TOTALS = (
    'SELECT sum("online") AS "online", sum("stale") AS "stale", sum("offline") AS "offline", '
    'sum("never") AS "never" FROM (SELECT last("online") AS "online", last("stale") AS "stale", '
    'last("offline") AS "offline", last("never") AS "never" FROM "liveness_summary" '
    'WHERE $timeFilter{where} GROUP BY "subdistrict")'
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
) -> JSON:
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
    return panel(
        f"{sensor_type.label} — {q.label} ({aggregate})",
        "timeseries",
        [target(query, alias="$tag_subdistrict")],
        unit=grafana_unit(q.unit),
        thresholds=thresholds_from_rule(rule),
        w=w,
        description=f"{sensor_type.label_zh} · {q.label} [{q.unit}]"
        + (f" · thresholds: alarm rule {rule.id}" if rule else ""),
    )


def _numeric(sensor_type: SensorType) -> list[str]:
    return [q.id for q in sensor_type.quantities.values() if q.kind in ("float", "int")]


def city_overview(district: District) -> JSON:
    lon = (district.bbox[0] + district.bbox[2]) / 2
    lat = (district.bbox[1] + district.bbox[3]) / 2
    geomap = panel(
        "Sensors by liveness",
        "geomap",
        [
            target(
                'SELECT last("lat") AS "lat", last("lon") AS "lon", last("state_code") AS "state",'
                ' last("alarm_severity") AS "alarm" FROM "sensor_liveness" WHERE $timeFilter '
                'GROUP BY "sensor_id", "type", "subdistrict"',
                fmt="table",
            )
        ],
        thresholds=STATE_THRESHOLDS,
        mappings=STATE_MAPPINGS,
        w=16,
        h=18,
        description="Colour: liveness (green online, yellow stale, red offline, grey never). "
        "Positions from the registry, written by the alarm runner.",
        options={
            "view": {"id": "coords", "lat": lat, "lon": lon, "zoom": 13},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [
                {
                    "type": "markers",
                    "name": "sensors",
                    "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                    "config": {
                        "style": {
                            "color": {"field": "state"},
                            "size": {"fixed": 5},
                            "opacity": 0.8,
                        }
                    },
                }
            ],
        },
    )
    counts = panel(
        "Sensors online / stale / offline",
        "stat",
        [target(LIVENESS_TOTALS.format(where=""), fmt="table")],
        w=8,
        h=6,
    )
    alarm_counts = panel(
        "Active alarms by severity",
        "stat",
        [
            target(
                'SELECT last("count") FROM "alarms_active" WHERE $timeFilter GROUP BY "severity"',
                alias="$tag_severity",
            )
        ],
        thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                 {"color": "red", "value": 1}]},
        w=8,
        h=6,
    )  # fmt: skip
    alarm_table = panel(
        "Active alarms",
        "table",
        [
            target(
                'SELECT last("level") AS "level", last("value") AS "value", last("acknowledged") '
                'AS "acknowledged" FROM "alarm_state" WHERE time > now() - 2m '
                'GROUP BY "sensor_id", "rule", "severity", "subdistrict"',
                fmt="table",
            )
        ],
        w=8,
        h=6,
    )
    # sensors whose notifications a maintenance window silences (docs/alerting.md)
    maintenance = panel(
        "Sensors in maintenance",
        "table",
        [
            target(
                'SELECT last("state") AS "state", last("alarm_severity") AS "alarm" '
                'FROM "sensor_liveness" WHERE time > now() - 2m AND "maintenance" = true '
                'GROUP BY "sensor_id", "subdistrict"',
                fmt="table",
            )
        ],
        w=8,
        h=6,
    )
    return dashboard(
        "sn-city", f"{district.name_en} — City overview",
        [geomap, counts, alarm_counts, alarm_table, maintenance], tags=["overview"],
    )  # fmt: skip


def subdistrict(catalogue: Catalogue, district: District, rules: RuleSet) -> JSON:
    variable = custom_variable(
        "subdistrict",
        "Subdistrict",
        [(f"{a.name_zh} {a.name_en}", a.id) for a in district.subdistricts.values()],
    )
    panels = [
        panel(
            "Sensors online / stale / offline",
            "stat",
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


def sensor_detail(catalogue: Catalogue) -> JSON:
    type_var = custom_variable(
        "type", "Sensor type", [(f"{t.label_zh} {t.label}", t.id) for t in catalogue.types.values()]
    )
    sensor_var = query_variable(
        "sensor", "Sensor", 'SHOW TAG VALUES FROM "$type" WITH KEY = "sensor_id"'
    )
    readings = panel(
        "Readings (numeric quantities)",
        "timeseries",
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
    liveness = panel(
        "Liveness",
        "state-timeline",
        [
            target(
                'SELECT last("state_code") AS "liveness" FROM "sensor_liveness" '
                "WHERE \"sensor_id\" = '$sensor' AND $timeFilter GROUP BY time($__interval) "
                "fill(none)"
            )
        ],
        thresholds=STATE_THRESHOLDS,
        mappings=STATE_MAPPINGS,
        w=12,
        h=6,
    )
    rejects = panel(
        "Rejected readings by reason",
        "timeseries",
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
) -> JSON:  # fmt: skip
    """A theme dashboard: (type, quantity, aggregate) panels, one line per subdistrict."""
    panels = [quantity_panel(catalogue.get(t), q, rules, aggregate=a) for t, q, a in picks]
    return dashboard(uid, title, panels, tags=["theme"])


def platform_health() -> JSON:
    def ts(title: str, query: str, unit: str = "short", alias: str = "$tag_ingester") -> JSON:
        return panel(title, "timeseries", [target(query, alias=alias)], unit=unit, w=8)

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
        panel("Sensors online / stale / offline", "stat",
              [target(LIVENESS_TOTALS.format(where=""), fmt="table")], w=8),
    ]  # fmt: skip
    return dashboard("sn-platform", "Platform health", panels, tags=["platform"])


def build_dashboards(
    catalogue: Catalogue | None = None,
    district: District | None = None,
    rules: RuleSet | None = None,
) -> dict[str, JSON]:
    """Every dashboard by uid."""
    catalogue, district, rules = (
        catalogue or load_catalogue(),
        district or load_district(),
        rules or load_rules(),
    )
    boards = [
        city_overview(district),
        subdistrict(catalogue, district, rules),
        sensor_detail(catalogue),
        theme("sn-air-noise", "Air & noise", catalogue, rules, [
            ("air_quality", "pm25", "mean"), ("air_quality", "pm10", "mean"),
            ("air_quality", "no2", "mean"), ("air_quality", "o3", "mean"),
            ("air_quality", "co", "mean"), ("noise", "laeq", "mean"),
        ]),
        theme("sn-water", "Water & drainage", catalogue, rules, [
            ("waterlogging", "depth", "max"), ("river_level", "level", "max"),
            ("water_quality", "do", "min"), ("water_quality", "ph", "mean"),
            ("water_quality", "turbidity", "mean"), ("water_quality", "nh3n", "mean"),
            ("hydrant", "pressure", "min"), ("weather", "rain", "max"),
        ]),
        theme("sn-traffic", "Traffic & parking", catalogue, rules, [
            ("traffic_flow", "count", "sum"), ("traffic_flow", "mean_speed", "mean"),
            ("parking", "occupied", "count"),
        ]),
        platform_health(),
    ]  # fmt: skip
    return {b["uid"]: b for b in boards}
