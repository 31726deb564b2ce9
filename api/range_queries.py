"""InfluxQL for ranges: one sensor over time (raw or downsampled) and per-subdistrict
aggregates, at the resolution ``choose_resolution`` picks. Pure functions of allowlisted
identifiers; values are bound parameters."""

from __future__ import annotations

from sensornet.catalogue import SensorType
from sensornet.influx import check_identifier
from sensornet.storage_layout import RAW, Resolution, aggregated

AGGREGATES = ("mean", "min", "max", "count")
# Reading an aggregate policy at a coarser step: how to combine its stored aggregates.
_ROLLUP = {
    "mean": ("mean", "mean"),
    "min": ("min", "min"),
    "max": ("max", "max"),
    "count": ("sum", "count"),
}


def quantities_for(sensor_type: SensorType, aggregate: str | None) -> list[str]:
    """Quantities an aggregate applies to (mean/min/max: numeric only)."""
    return [
        q.id
        for q in sensor_type.quantities.values()
        if aggregate is None or aggregate in aggregated(q)
    ]


def _select(sensor_type: SensorType, res: Resolution, step_s: int | None, aggregate: str) -> str:
    parts = []
    for q in quantities_for(sensor_type, None if res is RAW and step_s is None else aggregate):
        qi = check_identifier(q)
        if res is RAW:
            parts.append(f'"{qi}"' if step_s is None else f'{aggregate}("{qi}") AS "{qi}"')
        elif step_s is None or step_s == res.step_s:
            parts.append(f'"{qi}_{aggregate}" AS "{qi}"')
        else:
            fn, stored = _ROLLUP[aggregate]
            parts.append(f'{fn}("{qi}_{stored}") AS "{qi}"')
    return ", ".join(parts)


def sensor_series(
    sensor_type: SensorType, res: Resolution, step_s: int | None, aggregate: str
) -> str:
    """Rows of one sensor in ``[$start, $end]`` after ``$after``, at most ``$limit``."""
    m = check_identifier(sensor_type.measurement)
    grouped = step_s is not None and not (res is not RAW and step_s == res.step_s)
    q = (
        f'SELECT {_select(sensor_type, res, step_s, aggregate)} FROM "{res.rp}"."{m}" '  # noqa: S608
        'WHERE "sensor_id" = $sensor_id AND time >= $start AND time <= $end AND time > $after'
    )
    if grouped:
        q += f" GROUP BY time({step_s}s) fill(none)"
    return q + " ORDER BY time ASC LIMIT $limit"


def subdistrict_aggregate(
    sensor_type: SensorType,
    quantity: str,
    res: Resolution,
    step_s: int,
    aggregate: str,
    one_subdistrict: bool,
) -> str:
    """One quantity of one type aggregated per subdistrict and time bucket."""
    m, q = check_identifier(sensor_type.measurement), check_identifier(quantity)
    if res is RAW:
        expr = f'{aggregate}("{q}")'
    else:
        fn, stored = _ROLLUP[aggregate]
        expr = f'{fn}("{q}_{stored}")'
    where = "time >= $start AND time <= $end"
    if one_subdistrict:
        where += ' AND "subdistrict" = $subdistrict'
    return (
        f'SELECT {expr} AS "value" FROM "{res.rp}"."{m}" WHERE {where} '  # noqa: S608
        f'GROUP BY time({step_s}s), "subdistrict" fill(none)'
    )


def subdistrict_aggregates(
    sensor_type: SensorType,
    quantities: tuple[str, ...],
    res: Resolution,
    step_s: int,
    aggregate: str,
) -> str:
    """Several quantities of one type aggregated per subdistrict and time bucket."""
    m = check_identifier(sensor_type.measurement)
    parts = []
    for quantity in quantities:
        q = check_identifier(quantity)
        if res is RAW:
            parts.append(f'{aggregate}("{q}") AS "{q}"')
        else:
            fn, stored = _ROLLUP[aggregate]
            parts.append(f'{fn}("{q}_{stored}") AS "{q}"')
    return (
        f'SELECT {", ".join(parts)} FROM "{res.rp}"."{m}" '  # noqa: S608
        "WHERE time >= $start AND time < $end "
        f'GROUP BY time({step_s}s), "subdistrict" fill(none)'
    )
