"""Latest values of every sensor matching filters, in one call, with HTTP caching."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.problems import Problem
from api.query_common import (
    SENSOR_KEY,
    cached_json,
    decode_cursor,
    encode_cursor,
    registry_view,
    units,
    utc,
    with_units,
)
from sensornet.catalogue import Catalogue
from sensornet.latest import latest_of_type
from sensornet.registry.models import SENSOR_STATUSES
from sensornet.registry.store import DeviceInfo

router = APIRouter(tags=["latest"])
MAX_PAGE = 1000


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``min_lon,min_lat,max_lon,max_lat`` (WGS84), as in the district file."""
    if text is None:
        return None
    try:
        a, b, c, d = (float(x) for x in text.split(","))
    except ValueError:
        raise Problem(
            422,
            "Invalid bbox",
            "use min_lon,min_lat,max_lon,max_lat, e.g. 121.42,31.21,121.49,31.32",
        ) from None
    if not (a < c and b < d):
        raise Problem(422, "Invalid bbox", "min must be below max for lon and lat")
    return a, b, c, d


def matching(
    devices: list[DeviceInfo],
    catalogue: Catalogue,
    type_id: str | None,
    subdistrict: str | None,
    status: str | None,
    bbox: tuple[float, float, float, float] | None,
) -> list[DeviceInfo]:
    if type_id is not None and type_id not in catalogue.types:
        raise Problem(422, "Unknown sensor type", f"known: {', '.join(catalogue.types)}")
    if status is not None and status not in SENSOR_STATUSES:
        raise Problem(422, "Unknown status", f"known: {', '.join(SENSOR_STATUSES)}")
    out = [
        d
        for d in devices
        if (type_id is None or d.type == type_id)
        and (subdistrict is None or d.subdistrict == subdistrict)
        and (status is None or d.status == status)
        and (bbox is None or (bbox[0] <= d.lon <= bbox[2] and bbox[1] <= d.lat <= bbox[3]))
    ]
    return sorted(out, key=lambda d: d.id)


#: Up to this many sensors of a type are named in the query (OR of bound ids); above it
#: the whole type is read and filtered here, which is cheaper than a long OR list.
MAX_NAMED_IDS = 20


def page_queries(page: list[DeviceInfo]) -> dict[str, list[str]]:
    """Per sensor type on the page: the ids to name in the query ([] = the whole type)."""
    by_type: dict[str, list[str]] = {}
    for d in page:
        by_type.setdefault(d.type, []).append(d.id)
    return {t: ids if len(ids) <= MAX_NAMED_IDS else [] for t, ids in by_type.items()}


@router.get("/latest", summary="Latest reading of every sensor matching the filters")
async def latest_values(
    request: Request,
    type: Annotated[str | None, Query(description="Sensor type id (catalogue)")] = None,
    subdistrict: str | None = None,
    status: Annotated[str | None, Query(description="Registry status, e.g. active")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=400, description="next_cursor of the previous page"),
    ] = None,
) -> Response:
    """One page of sensors (ordered by id) with their latest reading within a day (null
    when none), units from the catalogue. ETag + ``If-None-Match`` give 304 when unchanged."""
    catalogue: Catalogue = request.app.state.catalogue
    devices = matching(
        list((await registry_view(request).devices()).values()),
        catalogue,
        type,
        subdistrict,
        status,
        parse_bbox(bbox),
    )
    after = decode_cursor(cursor, SENSOR_KEY, "a sensor id")
    if after is not None:
        devices = [d for d in devices if d.id > after]
    page = devices[:limit]
    influx = request.app.state.influx
    on_page = {d.id for d in page}
    known = catalogue.types  # a type the catalogue no longer has: listed, without values
    found = await asyncio.gather(
        *(
            latest_of_type(influx, known[t], ids, subdistrict, only=on_page)
            for t, ids in page_queries(page).items()
            if t in known
        )
    )
    latest = {k: v for part in found for k, v in part.items()}
    unit_of = {t: units(catalogue, t) for t in {d.type for d in page} if t in known}
    items = []
    for d in page:
        reading = latest.get(d.id)
        items.append(
            {
                "sensor_id": d.id,
                "type": d.type,
                "subdistrict": d.subdistrict,
                "status": d.status,
                "lat": d.lat,
                "lon": d.lon,
                "time": utc(reading.time_ns) if reading else None,
                "values": with_units(reading.values, unit_of[d.type]) if reading else {},
            }
        )
    more = len(devices) > limit
    body = {
        "count": len(items),
        "items": items,
        "next_cursor": encode_cursor(page[-1].id) if more and page else None,
    }
    return cached_json(request, body, max_age_s=10)
