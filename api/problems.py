"""Errors as RFC 9457 problem details (``application/problem+json``).

What a caller reads is written for the caller: our own ``Problem``s say what to change in
the request. Failures behind the API (InfluxDB down or refusing, any unexpected exception)
answer a fixed title and detail with an ``error_id``; the cause — InfluxDB's URL and
answer, the exception and its traceback — goes to the server log on a line with that id,
and never into the response (docs/security.md).
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sensornet.errors import InfluxError, InfluxUnavailableError, UnknownSensorType

PROBLEM = "application/problem+json"
log = logging.getLogger("sensornet.api")


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


def concealed(
    exc: BaseException,
    status: int = 500,
    title: str = "Internal error",
    detail: str = "The API failed on this request.",
    headers: dict[str, str] | None = None,
    instance: str = "",
) -> Problem:
    """A problem whose cause is logged under a fresh error id, not shown: InfluxDB's URL,
    body and exception texts are for operators; the caller can quote the id."""
    error_id = secrets.token_hex(8)
    log.error(
        "error_id=%s status=%d path=%s error=%s: %s",
        error_id,
        status,
        instance or "-",
        type(exc).__name__,
        exc,
        exc_info=exc if status == 500 else None,  # a traceback only for our own crashes
    )
    detail = f"{detail} Quote error id {error_id} to the operators."
    return Problem(status, title, detail, headers, error_id=error_id)


def _problem_response(problem: Problem, instance: str) -> JSONResponse:
    return _response(
        problem.status, problem.title, problem.detail, instance, problem.headers, **problem.extra
    )


def known_problem(exc: Exception, instance: str) -> JSONResponse | None:
    """The problem response for an error raised by a handler (ours or InfluxDB's), or None
    for anything else."""
    if isinstance(exc, Problem):
        return _problem_response(exc, instance)
    if isinstance(exc, UnknownSensorType):
        # a registry older than the catalogue; our own message, naming only the sensor's
        # type (which the caller may read in the registry) and the catalogue's types
        problem = Problem(409, "Sensor type not in the catalogue", str(exc))
    elif isinstance(exc, InfluxUnavailableError):
        problem = concealed(
            exc,
            503,
            "Time-series store unavailable",
            "The time-series store did not answer; try again in a minute.",
            {"Retry-After": "30"},
            instance,
        )
    elif isinstance(exc, InfluxError):
        # e.g. the database is missing or InfluxDB refused the query: not our crash
        problem = concealed(
            exc, 502, "Time-series store error", "The time-series store failed.", None, instance
        )
    else:
        return None
    return _problem_response(problem, instance)


def internal_problem(exc: BaseException, instance: str) -> JSONResponse:
    """500 for an unexpected exception: the traceback is logged under the error id."""
    return _problem_response(concealed(exc, instance=instance), instance)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods of the resource at the request's path: those of the routes with the
    path template of the first route that matches it (``/sensors/export.csv`` is GET
    only, although ``PATCH /sensors/{sensor_id}`` would also match its text)."""
    from fastapi.routing import iter_route_contexts

    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    methods: set[str] = set()
    template = None  # the path of the first route that matches, as FastAPI tries them
    for route in iter_route_contexts(app.routes):
        pattern = getattr(route, "path_regex", None)
        if pattern is None or not pattern.match(path):
            continue
        template = template or route.path
        if route.path == template and route.methods:
            methods |= set(route.methods)
    return sorted(methods)


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
        if exc.status_code == 405:
            # Starlette names the methods of the first route whose path matched; a path
            # several routes serve (GET and POST /sensors) allows all of theirs (RFC 9110)
            headers = (headers or {}) | {"Allow": ", ".join(allowed_methods(app, request))}
        return _response(exc.status_code, str(exc.detail), "", request.url.path, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return _response(422, "Invalid request", "see errors", request.url.path, errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware sends this, then re-raises to the server
        return internal_problem(exc, request.url.path)
