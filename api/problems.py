"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sensornet.errors import InfluxError, InfluxUnavailableError, UnknownSensorType

PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = headers or {}


def _response(
    status: int,
    title: str,
    detail: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def known_problem(exc: Exception, instance: str) -> JSONResponse | None:
    """The problem response for an error raised by a handler (ours or InfluxDB's), or None
    for anything else."""
    if isinstance(exc, Problem):
        return _response(exc.status, exc.title, exc.detail, instance, exc.headers, **exc.extra)
    if isinstance(exc, UnknownSensorType):  # a registry older than the catalogue
        return _response(409, "Sensor type not in the catalogue", str(exc), instance)
    if isinstance(exc, InfluxUnavailableError):
        return _response(503, "Time-series store unavailable", str(exc), instance)
    if isinstance(exc, InfluxError):
        # e.g. the database is missing or InfluxDB refused the query: not our crash
        return _response(502, "Time-series store error", str(exc), instance)
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    @app.exception_handler(InfluxError)
    @app.exception_handler(UnknownSensorType)
    async def _known(request: Request, exc: Exception) -> JSONResponse:
        response = known_problem(exc, request.url.path)
        assert response is not None
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return _response(exc.status_code, str(exc.detail), "", request.url.path, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return _response(422, "Invalid request", "see errors", request.url.path, errors=errors)
