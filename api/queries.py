"""InfluxQL the API sends. Identifiers come only from the catalogue (checked against a
strict pattern); every value is a bound ``$parameter``, never text in the query."""

from __future__ import annotations

from sensornet.influx import check_identifier


def sensor_latest(measurement: str) -> str:
    m = check_identifier(measurement)
    return f'SELECT * FROM "{m}" WHERE "sensor_id" = $sensor_id ORDER BY time DESC LIMIT 1'  # noqa: S608


def sensor_range(measurement: str) -> str:
    m = check_identifier(measurement)
    return (
        f'SELECT * FROM "{m}" WHERE "sensor_id" = $sensor_id '  # noqa: S608
        "AND time >= $start AND time <= $end ORDER BY time ASC LIMIT $limit"
    )
