"""A sensor's readings over a range (raw or downsampled, paged, or as CSV) and aggregates
per subdistrict over time. The resolution is chosen from the range (docs/storage.md)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from api import range_queries
from api.answer_rows import csv_lines, ordered_rows, series_rows
from api.problems import Problem
from api.query_common import (
    TIME_KEY,
    CsvResponse,
    decode_cursor,
    device_or_404,
    encode_cursor,
)
from api.time_range import DAY, End, StartRequired, checked_range
from sensornet.catalogue import Catalogue, SensorType
from sensornet.csv_cells import neutralise
from sensornet.district import load_district
from sensornet.influx import InfluxClient, first_series
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.storage_layout import RAW, Resolution, choose_resolution, duration_s

router = APIRouter(tags=["ranges"])
MAX_PAGE = 10_000
MAX_CSV_ROWS = 200_000
MAX_AGGREGATE_POINTS = 20_000
EPOCH = "1970-01-01T00:00:00Z"
AggregateParam = Annotated[str, Query(pattern="^(mean|min|max|count)$")]
StepParam = Annotated[
    int | None, Query(ge=1, le=30 * 86400, description="Downsampling step in seconds")
]


def _resolution(
    settings: Settings, sensor_type: SensorType, start: datetime, end: datetime, step: int | None
) -> Resolution:
    res = choose_resolution(
        start,
        end,
        datetime.now(UTC),
        interval_s=sensor_type.interval_s,
        raw_retention_s=duration_s(settings.influx_raw_retention),
        minute_retention_s=duration_s(settings.influx_1m_retention),
        step_s=step,
    )
    if step is not None and res.step_s and step % res.step_s:
        # buckets of ``step`` over stored ``res.step_s`` aggregates would be uneven: the
        # answer would not be what its step_s says, so it is refused, saying what works
        raise Problem(
            422,
            "Step not available for this range",
            f"from {start.isoformat()} the readings are kept only as {res.name} aggregates: "
            f"pass a step that is a multiple of {res.step_s} s",
            resolution=res.name,
            step_multiple_of=res.step_s,
        )
    return res


def estimate_rows(sensor_type: SensorType, res: Resolution, span_s: float, step: int | None) -> int:
    return int(span_s / (step or res.step_s or sensor_type.interval_s)) + 1


@dataclass(frozen=True)
class SeriesPlan:
    """What a range of one sensor type at one resolution needs besides its sensor and
    times: the InfluxQL, the quantities it returns (in that order) and their units. The
    same for every request of that shape, so made once per shape (``series_plan``)."""

    resolution: Resolution
    query: str
    names: list[str]
    units: dict[str, str]
    aggregate: str | None  # None: raw readings


def series_plan(
    request: Request, sensor_type: SensorType, res: Resolution, step: int | None, aggregate: str
) -> SeriesPlan:
    plans: dict[tuple[str, str, int | None, str], SeriesPlan] | None = getattr(
        request.app.state, "series_plans", None
    )
    if plans is None:
        plans = request.app.state.series_plans = {}
    key = (sensor_type.id, res.name, step, aggregate)
    plan = plans.get(key)
    if plan is None:
        aggregated = aggregate if step or res is not RAW else None
        names = range_queries.quantities_for(sensor_type, aggregated)
        unit_of = {q.id: q.unit for q in sensor_type.quantities.values()}
        plan = plans[key] = SeriesPlan(
            resolution=res,
            query=range_queries.sensor_series(sensor_type, res, step, aggregate),
            names=names,
            # a count has no physical unit
            units={q: "count" if aggregated == "count" else unit_of[q] for q in names},
            aggregate=aggregated,
        )
    return plan


def _series_params(
    device: DeviceInfo, start: datetime, end: datetime, after: str, limit: int
) -> dict[str, str | int | float | bool]:
    return {
        "sensor_id": device.id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "after": after,
        "limit": limit,
    }


@router.get("/sensors/{sensor_id}/series", summary="A sensor's readings over a range")
async def sensor_series(
    request: Request,
    sensor_id: str,
    start: StartRequired,
    end: End = None,
    step: StepParam = None,
    aggregate: AggregateParam = "mean",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=400, description="next_cursor of a page")
    ] = None,
) -> Response:
    """Raw readings, or with ``step`` one ``aggregate`` per step; long ranges without a step
    are read from the minute/hour aggregates (``resolution`` says which). Paged by time."""
    device = await device_or_404(request, sensor_id)
    start, end = checked_range(start, end, datetime.now(UTC), DAY)
    after = decode_cursor(cursor, TIME_KEY, "a reading's time") or EPOCH
    sensor_type = request.app.state.catalogue.get(device.type)
    res = _resolution(request.app.state.settings, sensor_type, start, end, step)
    plan = series_plan(request, sensor_type, res, step, aggregate)
    influx: InfluxClient = request.app.state.influx
    # epoch="": InfluxDB answers RFC 3339 times, passed through as they are
    answer = await influx.query_body(
        plan.query, _series_params(device, start, end, after, limit), epoch=""
    )
    rows, count, last = series_rows(answer, plan.names)
    head = {
        "sensor_id": device.id,
        "type": device.type,
        "subdistrict": device.subdistrict,
        "resolution": plan.resolution.name,
        "step_s": step,
        "aggregate": plan.aggregate,
        "columns": ["time", *plan.names],
        "units": plan.units,
        "next_cursor": encode_cursor(last) if count == limit and last else None,
    }
    content = b"".join((orjson.dumps(head)[:-1], b',"readings":', rows, b"}"))
    return Response(content, media_type="application/json")


@router.get(
    "/sensors/{sensor_id}/series.csv",
    summary="A sensor's readings as CSV",
    response_class=CsvResponse,
)
async def sensor_series_csv(
    request: Request,
    sensor_id: str,
    start: StartRequired,
    end: End = None,
    step: StepParam = None,
    aggregate: AggregateParam = "mean",
) -> Response:
    """The whole range in one file (no paging); refused with 422 above 200,000 rows, with
    the estimate, so a client narrows the range or adds a ``step`` instead of waiting."""
    device = await device_or_404(request, sensor_id)
    start, end = checked_range(start, end, datetime.now(UTC), DAY)
    sensor_type = request.app.state.catalogue.get(device.type)
    res = _resolution(request.app.state.settings, sensor_type, start, end, step)
    estimate = estimate_rows(sensor_type, res, (end - start).total_seconds(), step)
    if estimate > MAX_CSV_ROWS:
        raise Problem(
            422,
            "Result would be too large",
            f"about {estimate} rows; at most {MAX_CSV_ROWS} per export: "
            "narrow the range or pass a coarser step",
            estimated_rows=estimate,
            max_rows=MAX_CSV_ROWS,
        )
    plan = series_plan(request, sensor_type, res, step, aggregate)
    influx: InfluxClient = request.app.state.influx
    params = _series_params(device, start, end, EPOCH, MAX_CSV_ROWS)
    body = await influx.query_body(plan.query, params, epoch="")
    names, unit = plan.names, plan.units
    header = ["time", *(f"{q} [{unit[q]}]" if unit[q] else q for q in names)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    lines = csv_lines(body, names)
    if lines is None:  # decode and write row by row (rare shapes: see api.answer_rows)
        series = first_series(body)
        if series:
            values = series[0].get("values") or []
            # text values come from devices: no formulas for the spreadsheet that opens it
            writer.writerows(
                [neutralise(v) if isinstance(v, str) else v for v in row]
                for row in ordered_rows(series[0]["columns"], values, names)
            )
        content: str | bytes = out.getvalue()
    else:
        content = out.getvalue().encode() + lines
    name = f"{device.id}_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.csv"
    return Response(
        content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/aggregates", summary="One quantity aggregated per subdistrict over time")
async def aggregates(
    request: Request,
    type: Annotated[str, Query(description="Sensor type id")],
    quantity: str,
    start: StartRequired,
    end: End = None,
    step: Annotated[int, Query(ge=60, le=30 * 86400)] = 3600,
    aggregate: AggregateParam = "mean",
    subdistrict: str | None = None,
) -> Response:
    """Across the sensors of a subdistrict; with aggregates stored per sensor, a mean is the
    mean of sensor means (each sensor-minute or -hour weighs the same)."""
    catalogue: Catalogue = request.app.state.catalogue
    if type not in catalogue.types:
        raise Problem(422, "Unknown sensor type", f"known: {', '.join(catalogue.types)}")
    sensor_type = catalogue.get(type)
    if quantity not in range_queries.quantities_for(sensor_type, aggregate):
        known = ", ".join(range_queries.quantities_for(sensor_type, aggregate))
        raise Problem(422, "Unknown quantity", f"{aggregate} of {type} exists for: {known}")
    start, end = checked_range(start, end, datetime.now(UTC), DAY)
    buckets = int((end - start).total_seconds() / step) + 1
    groups = 1 if subdistrict else len(load_district().subdistricts)
    if buckets * groups > MAX_AGGREGATE_POINTS:
        raise Problem(
            422,
            "Result would be too large",
            f"{buckets} steps × {groups} subdistricts; at most {MAX_AGGREGATE_POINTS} points: "
            "narrow the range or pass a larger step",
            estimated_points=buckets * groups,
            max_points=MAX_AGGREGATE_POINTS,
        )
    res = _resolution(request.app.state.settings, sensor_type, start, end, step)
    q = range_queries.subdistrict_aggregate(
        sensor_type, quantity, res, step, aggregate, subdistrict is not None
    )
    params: dict[str, str | int | float | bool] = {
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    if subdistrict:
        params["subdistrict"] = subdistrict
    influx: InfluxClient = request.app.state.influx
    series = await influx.query(q, params, epoch="")
    unit = "count" if aggregate == "count" else sensor_type.quantities[quantity].unit
    body = {
        "type": type,
        "quantity": quantity,
        "unit": unit,
        "aggregate": aggregate,
        "step_s": step,
        "resolution": res.name,
        "series": [
            {
                "subdistrict": (s.get("tags") or {}).get("subdistrict"),
                "points": [{"time": t, "value": v} for t, v in s.get("values", [])],
            }
            for s in series
        ],
    }
    return Response(orjson.dumps(body), media_type="application/json")
