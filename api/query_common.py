"""What the query routers share: the registry view, latest values per sensor, units,
cursors and HTTP caching. Reads only; every InfluxQL value is a bound parameter."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from api.problems import Problem
from sensornet import cursors
from sensornet.catalogue import Catalogue
from sensornet.errors import InvalidCursor, TimeOutOfRange
from sensornet.registry.store import DeviceCache, DeviceInfo
from sensornet.timestamps import check_store_time


def registry_view(request: Request) -> DeviceCache:
    """The registry's sensors for query endpoints, so they do not read SQL per request."""
    view: DeviceCache | None = getattr(request.app.state, "registry_view", None)
    if view is None:
        view = request.app.state.registry_view = DeviceCache(request.app.state.registry)
    return view


async def device_or_404(request: Request, sensor_id: str) -> DeviceInfo:
    device = (await registry_view(request).devices()).get(sensor_id)
    if device is None:
        raise Problem(404, "Unknown sensor", f"no sensor {sensor_id!r} in the registry")
    return device


def units(catalogue: Catalogue, type_id: str) -> dict[str, str]:
    return {q.id: q.unit for q in catalogue.get(type_id).quantities.values()}


def with_units(values: Mapping[str, Any], unit_of: Mapping[str, str]) -> dict[str, Any]:
    return {k: {"value": v, "unit": unit_of.get(k, "")} for k, v in values.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(ns: int) -> datetime:
    """A UTC datetime (µs) for a body dumped with ``DUMP_OPTIONS``: orjson formats it in C
    (RFC 3339, ``Z``, µs only when not zero), faster than ``isoformat`` per value."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


DUMP_OPTIONS = orjson.OPT_UTC_Z


#: What a cursor of ours holds: a sensor id (as the registry keeps it) or an InfluxDB time
SENSOR_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
TIME_KEY = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def encode_cursor(value: str) -> str:
    return cursors.encode(value)


def decode_cursor(cursor: str | None, shape: re.Pattern[str], what: str) -> str | None:
    """The key in a ``next_cursor`` we gave, or None without one; anything else is a 422
    problem (sensornet.cursors), as the registry's listing answers (and as the schema,
    which cannot tell our cursors from others, makes a 422 of any cursor it refuses)."""
    if cursor is None:
        return None
    try:
        return cursors.decode(cursor, shape, what)
    except InvalidCursor as exc:
        raise Problem(422, "Invalid cursor", str(exc)) from None


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d")


def _rfc3339_text(value: object) -> object:
    """Before pydantic's lax datetime parsing, which would also read ``0.5`` or
    ``1700000000`` as Unix time: the API documents RFC 3339 (``format: date-time``) and
    holds to it (tests/test_api_fuzz.py checks that what the schema refuses is refused)."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("use an RFC 3339 time, e.g. 2026-11-25T08:00:00+08:00")
    return value


#: Add to a time parameter's ``Annotated[...]``: RFC 3339 text only
RFC3339 = BeforeValidator(_rfc3339_text)


class CsvResponse(Response):
    """Declares ``text/csv`` in the OpenAPI document for a route answering CSV."""

    media_type = "text/csv"


class GeoJsonResponse(JSONResponse):
    """Declares ``application/geo+json`` (RFC 7946) for a route answering GeoJSON."""

    media_type = "application/geo+json"


def in_store(**times: datetime | None) -> None:
    """Refuse, with a 422 problem naming it, a time the time-series store cannot hold:
    InfluxDB would refuse the query, which is no failure of the store (no 502, no log)."""
    for name, at in times.items():
        if at is not None:
            try:
                check_store_time(at, name)
            except TimeOutOfRange as exc:
                raise Problem(422, "Time out of range", str(exc)) from None


def cached_json(request: Request, body: Any, max_age_s: int) -> Response:
    """JSON with a strong ETag of its bytes and Cache-Control; ``If-None-Match`` → 304.

    ``private``: the data endpoints will need credentials, so shared caches must not
    keep them."""
    content = orjson.dumps(body, option=DUMP_OPTIONS)
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={max_age_s}"}
    match = request.headers.get("if-none-match", "")
    if etag in {t.strip() for t in match.split(",")} or match.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/json", headers=headers)
