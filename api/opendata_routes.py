"""Open data: a read-only catalogue of aggregated datasets, anonymous and rate-limited per
client IP across the host's API workers (GCRA, sensornet.shared_limit; 429 with
``Retry-After``). Only per-subdistrict aggregates leave
through here, never a sensor's own readings."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from api import range_queries
from api.problems import Problem
from api.time_range import DAY, End, Start, checked_range
from sensornet.catalogue import Catalogue
from sensornet.client_address import client_address
from sensornet.influx import InfluxClient
from sensornet.opendata import Dataset, OpenDataCatalogue, load_opendata
from sensornet.settings import Settings
from sensornet.shared_limit import SharedRateLimiter
from sensornet.storage_layout import choose_resolution, duration_s


def client_of(request: Request) -> str:
    """The client a limit counts: the peer, or what a trusted proxy says it forwarded
    (``SENSORNET_API_TRUSTED_PROXIES``; sensornet.client_address)."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return client_address(peer, forwarded, request.app.state.trusted_proxies)


_opening = threading.Lock()


def limiter_of(app: Any) -> SharedRateLimiter:
    """This process's handle on the host's shared limit state, opened on first use."""
    limiter: SharedRateLimiter | None = getattr(app.state, "opendata_limiter", None)
    if limiter is None:
        with _opening:
            limiter = getattr(app.state, "opendata_limiter", None)
            if limiter is None:
                s: Settings = app.state.settings
                path = s.opendata_limit_file or s.state_dir / "opendata-limits.db"
                limiter = SharedRateLimiter(path, s.opendata_rate_per_s, s.opendata_burst)
                app.state.opendata_limiter = limiter
    return limiter


def close_limiter(app: Any) -> None:
    limiter: SharedRateLimiter | None = getattr(app.state, "opendata_limiter", None)
    if limiter is not None:
        app.state.opendata_limiter = None
        limiter.close()


def rate_limited(request: Request) -> None:
    """Per client, shared by every API worker of the host (sensornet.shared_limit)."""
    wait = limiter_of(request.app).check(client_of(request), time.time())
    if wait:
        detail = f"open data allows a burst, then a steady rate: retry in {wait} s"
        raise Problem(429, "Too many requests", detail, headers={"Retry-After": str(wait)})


router = APIRouter(prefix="/open", tags=["open data"], dependencies=[Depends(rate_limited)])


def _meta(cat: OpenDataCatalogue, catalogue: Catalogue, d: Dataset) -> dict[str, Any]:
    quantities = catalogue.get(d.type).quantities
    return {
        "id": d.id,
        "title": {"en": d.title_en, "zh": d.title_zh},
        "description": d.description,
        "publisher": cat.publisher,
        "licence": cat.licence,
        "aggregate": d.aggregate,
        "step_s": d.step_s,
        "max_days_per_request": d.max_days,
        "update_frequency": d.update_frequency,
        "spatial_unit": "subdistrict",
        "fields": [
            {"id": q, "label": quantities[q].label, "unit": quantities[q].unit}
            for q in d.quantities
        ],
        "data_url": f"/open/datasets/{d.id}/data",
    }


def _dataset(dataset_id: str) -> Dataset:
    d = load_opendata().datasets.get(dataset_id)
    if d is None:
        raise Problem(404, "Unknown dataset", "see /open/datasets for the list")
    return d


@router.get("/datasets", summary="The open-data catalogue")
async def datasets(request: Request) -> dict[str, Any]:
    cat = load_opendata()
    catalogue: Catalogue = request.app.state.catalogue
    return {
        "publisher": cat.publisher,
        "licence": cat.licence,
        "datasets": [_meta(cat, catalogue, d) for d in cat.datasets.values()],
    }


@router.get("/datasets/{dataset_id}", summary="One dataset's metadata")
async def dataset(request: Request, dataset_id: str) -> dict[str, Any]:
    return _meta(load_opendata(), request.app.state.catalogue, _dataset(dataset_id))


def _step_start(at: datetime, step_s: int) -> datetime:
    """The start of the ``step_s`` bucket ``at`` falls in (InfluxDB's buckets: from the epoch)."""
    return datetime.fromtimestamp(int(at.timestamp()) // step_s * step_s, UTC)


@router.get("/datasets/{dataset_id}/data", summary="A dataset's aggregated data")
async def dataset_data(
    request: Request,
    dataset_id: str,
    start: Start = None,
    end: End = None,
) -> Response:
    d = _dataset(dataset_id)
    longest = timedelta(days=d.max_days)
    start, end = checked_range(start, end, datetime.now(UTC), DAY, longest)
    catalogue: Catalogue = request.app.state.catalogue
    settings: Settings = request.app.state.settings
    sensor_type = catalogue.get(d.type)
    now = datetime.now(UTC)
    # Finished steps only: the aggregate of the step in progress changes until it ends
    end = min(end, _step_start(now, d.step_s))
    res = choose_resolution(
        start, end, now, interval_s=sensor_type.interval_s,
        raw_retention_s=duration_s(settings.influx_raw_retention),
        minute_retention_s=duration_s(settings.influx_1m_retention), step_s=d.step_s,
    )  # fmt: skip
    q = range_queries.subdistrict_aggregates(sensor_type, d.quantities, res, d.step_s, d.aggregate)
    influx: InfluxClient = request.app.state.influx
    series = []
    if start < end:
        params = {"start": start.isoformat(), "end": end.isoformat()}
        series = await influx.query(q, params, epoch="")
    records = []
    for s in series:
        area = (s.get("tags") or {}).get("subdistrict")
        columns = s["columns"]
        for values in s.get("values", []):
            row = dict(zip(columns, values, strict=True))
            records.append(
                {"time": row.pop("time"), "subdistrict": area}
                | {q: row.get(q) for q in d.quantities}
            )
    records.sort(key=lambda r: (r["time"], r["subdistrict"] or ""))
    body = {
        "dataset": d.id,
        "licence": load_opendata().licence,
        "units": {q: sensor_type.quantities[q].unit for q in d.quantities},
        "start": start.isoformat(),
        "end": end.isoformat(),
        "records": records,
    }
    return Response(orjson.dumps(body), media_type="application/json")
