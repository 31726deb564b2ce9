"""What Grafana cannot compute itself, written back to InfluxDB by the alarm runner each
round: the registry's positions and liveness per sensor (for the map), liveness counts per
subdistrict and the active alarms. Pure functions returning line-protocol lines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from sensornet.alarms.store import AlarmRecord
from sensornet.catalogue import Catalogue
from sensornet.latest import Latest
from sensornet.lineprotocol import FieldValue, encode_point
from sensornet.liveness import Liveness, liveness
from sensornet.mapcrs import MapCrs, to_map
from sensornet.registry.store import DeviceInfo

#: Numeric code per state, so Grafana can colour by thresholds (0 online … 3 never).
STATE_CODES: dict[Liveness, int] = {"online": 0, "stale": 1, "offline": 2, "never": 3}
SEVERITY_CODES = {"info": 1, "warning": 2, "major": 3, "critical": 4}


def liveness_states(
    devices: Iterable[DeviceInfo],
    latest: Mapping[str, Latest],
    said_offline: Mapping[str, bool],
    catalogue: Catalogue,
    now_ns: int,
) -> dict[str, Liveness]:
    out: dict[str, Liveness] = {}
    for d in devices:
        seen = latest.get(d.id)
        out[d.id] = liveness(
            seen.time_ns if seen else None,
            catalogue.get(d.type).interval_s,
            now_ns,
            said_offline=said_offline.get(d.id, False),
        )
    return out


def operations_view_lines(
    devices: Iterable[DeviceInfo],
    states: Mapping[str, Liveness],
    active: Iterable[AlarmRecord],
    now_ns: int,
    in_maintenance: frozenset[str] | set[str] = frozenset(),
    crs: MapCrs = "wgs84",
) -> list[str]:
    """``sensor_liveness`` per sensor (``maintenance`` true while a window covers it),
    ``liveness_summary`` per subdistrict, ``alarms_active`` per severity and
    ``alarm_state`` per active alarm.

    Positions: ``lat``/``lon`` stay WGS84 (the registry's); ``map_lat``/``map_lon`` are in
    the basemap's coordinate system ``crs`` (sensornet/mapcrs.py), which the map draws.
    ``liveness_summary`` is the city-zoom map layer: one row per subdistrict whatever the
    number of sensors, with its counts by liveness, its active alarms, the worst alarm
    severity (0 none … 4 critical) and a marker position (the mean of its sensors')."""
    lines: list[str] = []
    per_area: dict[str, Counter[str]] = {}
    sums: dict[str, list[float]] = {}
    worst: dict[str, int] = {}
    area_worst: dict[str, int] = {}
    area_alarms: Counter[str] = Counter()
    active = list(active)
    for a in active:
        worst[a.sensor_id] = max(worst.get(a.sensor_id, 0), SEVERITY_CODES[a.severity])
        area_worst[a.subdistrict] = max(
            area_worst.get(a.subdistrict, 0), SEVERITY_CODES[a.severity]
        )
        area_alarms[a.subdistrict] += 1
    for d in devices:
        state = states.get(d.id, "never")
        per_area.setdefault(d.subdistrict, Counter())[state] += 1
        acc = sums.setdefault(d.subdistrict, [0.0, 0.0, 0.0])
        acc[0] += d.lat
        acc[1] += d.lon
        acc[2] += 1
        map_lat, map_lon = to_map(d.lat, d.lon, crs)
        lines.append(
            encode_point(
                "sensor_liveness",
                {"sensor_id": d.id, "type": d.type, "subdistrict": d.subdistrict},
                {
                    "lat": d.lat,
                    "lon": d.lon,
                    "map_lat": map_lat,
                    "map_lon": map_lon,
                    "state": state,
                    "state_code": STATE_CODES[state],
                    "alarm_severity": worst.get(d.id, 0),
                    "maintenance": d.id in in_maintenance,
                },
                now_ns,
            )
        )
    for area, counts in per_area.items():
        lat_sum, lon_sum, n = sums[area]
        map_lat, map_lon = to_map(lat_sum / n, lon_sum / n, crs)
        fields: dict[str, FieldValue] = {s: counts.get(s, 0) for s in STATE_CODES}
        fields |= {
            "sensors": int(n),
            "alarms": area_alarms[area],
            "worst_alarm": area_worst.get(area, 0),
            "map_lat": map_lat,
            "map_lon": map_lon,
        }
        lines.append(encode_point("liveness_summary", {"subdistrict": area}, fields, now_ns))
    by_severity = Counter(a.severity for a in active)
    for severity in SEVERITY_CODES:
        lines.append(
            encode_point(
                "alarms_active", {"severity": severity}, {"count": by_severity[severity]}, now_ns
            )
        )
    for a in active:
        lines.append(
            encode_point(
                "alarm_state",
                {
                    "sensor_id": a.sensor_id,
                    "rule": a.rule_id,
                    "severity": a.severity,
                    "subdistrict": a.subdistrict,
                },
                {
                    "level": a.level_name,
                    "value": a.value,
                    "since": a.raised_at.isoformat(timespec="seconds"),
                    "acknowledged": a.acknowledged_at is not None,
                    "maintenance": a.sensor_id in in_maintenance,
                },
                now_ns,
            )
        )
    return lines
