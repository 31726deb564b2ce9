"""Bulk import (JSON or CSV body) and export (CSV, GeoJSON) of the registry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.auth import Engineer, Viewer
from api.broker_sync import apply
from api.problems import Problem
from api.query_common import CsvResponse, GeoJsonResponse
from sensornet.district import load_district
from sensornet.registry import bulk
from sensornet.registry.service import Registry
from sensornet.reserved import reserved_ids

router = APIRouter(tags=["registry"])
#: An import's body cap: the most rows an import takes at ~200 bytes a row (docs/api.md)
MAX_IMPORT_BODY = 20 * 1024 * 1024
DryRun = Annotated[bool, Query(description="Check and report, change nothing")]


class ImportIn(BaseModel):
    sensors: list[dict[str, Any]] = Field(max_length=bulk.MAX_ROWS)


class RowErrorOut(BaseModel):
    row: int
    sensor_id: str | None
    field: str | None
    message: str


class ImportOut(BaseModel):
    dry_run: bool
    applied: bool
    rows: int
    created: int
    updated: int
    unchanged: int
    errors: list[RowErrorOut]


def _registry(request: Request) -> Registry:
    state = request.app.state
    return Registry(state.registry, state.catalogue, load_district(), reserved_ids(state.settings))


async def _import(
    request: Request, rows: list[dict[str, Any]], actor: str, dry_run: bool
) -> ImportOut:
    report = await bulk.import_sensors(_registry(request), rows, actor, dry_run)
    if report.applied and report.updated:  # a status change may retire a sensor
        await apply(request, f"the import is applied ({report.updated} updated)")
    out = ImportOut.model_validate(report.as_dict())
    if report.errors:
        raise Problem(
            422,
            "Import refused",
            f"{len(report.errors)} bad row(s); nothing was changed",
            errors=[e.model_dump() for e in out.errors],
        )
    return out


@router.post("/sensors/import", response_model=ImportOut, max_body_size=MAX_IMPORT_BODY)
async def import_json(
    request: Request, who: Engineer, body: ImportIn, dry_run: DryRun = False
) -> ImportOut:
    """All or nothing: a bad row refuses the whole file (422 with every bad row)."""
    return await _import(request, body.sensors, who.actor, dry_run)


@router.post("/sensors/import.csv", response_model=ImportOut, max_body_size=MAX_IMPORT_BODY)
async def import_csv(
    request: Request,
    who: Engineer,
    body: Annotated[str, Body(media_type="text/csv", description="The template's columns")],
    dry_run: DryRun = False,
) -> ImportOut:
    try:
        rows = bulk.parse_csv(body)
    except bulk.ImportFormatError as exc:
        raise Problem(422, "Not a sensor CSV", str(exc)) from exc
    return await _import(request, rows, who.actor, dry_run)


@router.get("/sensors/export.csv", response_class=CsvResponse)
async def export_csv(request: Request, who: Viewer) -> Response:
    text = bulk.to_csv(await bulk.all_sensors(_registry(request)))
    return Response(text, media_type="text/csv; charset=utf-8")


@router.get("/sensors/export.geojson", response_class=GeoJsonResponse)
async def export_geojson(request: Request, who: Viewer) -> JSONResponse:
    found = await bulk.all_sensors(_registry(request))
    return JSONResponse(bulk.to_geojson(found), media_type="application/geo+json")
