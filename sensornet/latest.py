"""Latest reading of each sensor of a type, from the raw policy: shared by the query API,
the alarm runner and platform health. Every value is a bound parameter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensornet.catalogue import Catalogue, SensorType
from sensornet.influx import InfluxClient, check_identifier

#: How far back "latest" looks. Older readings would need a scan of all raw data; a sensor
#: not heard for a day is offline whatever its interval (liveness: 6 intervals at most).
LATEST_LOOKBACK_S = 86_400
#: What each device last said on its status topic (Last Will included), within a day.
DEVICE_STATUS = (
    'SELECT last("state") AS "state" FROM "device_status" WHERE time > now() - 1d '
    'GROUP BY "sensor_id"'
)


@dataclass(frozen=True, slots=True)
class Latest:
    time_ns: int
    values: dict[str, Any]


def latest_query(sensor_type: SensorType, n_ids: int, subdistrict: bool) -> str:
    """Last row per sensor of one type; ``$s0..`` restrict it to a page of sensors."""
    m = check_identifier(sensor_type.measurement)
    where = ["time > $since"]
    if subdistrict:
        where.append('"subdistrict" = $subdistrict')
    if n_ids:
        where.append("(" + " OR ".join(f'"sensor_id" = $s{i}' for i in range(n_ids)) + ")")
    return (
        f'SELECT * FROM "{m}" WHERE {" AND ".join(where)} '  # noqa: S608
        'GROUP BY "sensor_id" ORDER BY time DESC LIMIT 1'
    )


def latest_params(
    ids: Sequence[str], subdistrict: str | None, now_ns: int | None = None
) -> dict[str, str | int | float | bool]:
    now_ns = now_ns or time.time_ns()
    since = datetime.fromtimestamp((now_ns / 1e9) - LATEST_LOOKBACK_S, UTC).isoformat()
    params: dict[str, str | int | float | bool] = {"since": since}
    if subdistrict:
        params["subdistrict"] = subdistrict
    params.update({f"s{i}": s for i, s in enumerate(ids)})
    return params


async def latest_of_type(
    influx: InfluxClient,
    sensor_type: SensorType,
    ids: Sequence[str] = (),
    subdistrict: str | None = None,
    only: Container[str] | None = None,
) -> dict[str, Latest]:
    """Latest reading of each sensor of one type (all of them when ``ids`` is empty),
    of the sensors in ``only`` when given (the query may read more: see ``/latest``)."""
    q = latest_query(sensor_type, len(ids), subdistrict is not None)
    series = await influx.query(q, latest_params(ids, subdistrict))
    fields = sensor_type.quantities
    out: dict[str, Latest] = {}
    columns: list[str] = []
    at: list[tuple[str, int]] = []
    when = 0
    for s in series:  # one series per sensor, all with the same columns
        sensor_id = s["tags"]["sensor_id"]
        if only is not None and sensor_id not in only:
            continue
        if s["columns"] != columns:
            columns = s["columns"]
            at = [(k, i) for i, k in enumerate(columns) if k in fields]
            when = columns.index("time")
        for v in s.get("values") or ():
            values = {k: v[i] for k, i in at if v[i] is not None}
            out[sensor_id] = Latest(int(v[when]), values)
    return out


async def latest_of_types(
    influx: InfluxClient, catalogue: Catalogue, type_ids: Sequence[str]
) -> dict[str, Latest]:
    """Latest reading of every sensor of several types, queried concurrently; a type the
    catalogue no longer has is skipped (its sensors have no latest reading)."""
    known = [catalogue.types[t] for t in type_ids if t in catalogue.types]
    found = await asyncio.gather(*(latest_of_type(influx, t) for t in known))
    return {k: v for part in found for k, v in part.items()}
