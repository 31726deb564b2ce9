"""The CLI's one error boundary: an operational failure is one clear line and an exit
code, never a traceback (``--debug`` shows it).

Operational means what a user can act on: a platform error, a file that is not there, a
service that does not answer, a setting that does not validate. Anything else is a bug and
keeps its traceback, with a line saying so."""

from __future__ import annotations

import errno
import socket
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

import httpx
import pydantic
import typer
from rich.console import Console
from rich.markup import escape

from sensornet.errors import SensornetError

EXIT_ERROR = 1  # an operational failure: the line says what to do
EXIT_BUG = 70  # EX_SOFTWARE: not the user's fault; the traceback is printed
EXIT_INTERRUPTED = 130


def settings_problem(exc: pydantic.ValidationError) -> str:
    """Pydantic's errors as the user wrote them: the variable and what is wrong with it,
    without pydantic's own wording of types or its link to its website."""
    model = exc.title
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "value"
        if model == "Settings":
            field = f"SENSORNET_{field.upper()}"
        given = error.get("input")
        shown = f" (got {given!r:.60})" if isinstance(given, str | int | float) else ""
        parts.append(f"{field}: {error['msg']}{shown}")
    return "invalid " + ("setting " if model == "Settings" else "input ") + "; ".join(parts)


def describe(exc: BaseException) -> str | None:
    """One line for an operational failure, or None for a bug."""
    if isinstance(exc, SensornetError):
        return str(exc)
    if isinstance(exc, pydantic.ValidationError):
        return settings_problem(exc)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return f"bad URL: {exc} (give a full URL such as http://host:3000)"
    if isinstance(exc, httpx.TimeoutException):
        return f"{_where(exc)} did not answer in time: is it running and reachable?"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {_where(exc)}: is it running and reachable?"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{_where(exc)} answered {exc.response.status_code}: {exc.response.text[:200]}"
    if isinstance(exc, httpx.HTTPError):
        return f"{_where(exc)} failed: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc} (check its owner and mode)"
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {exc} (is the service running? `sensornet services up`)"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full writing {exc.filename or 'a file'}: free space and try again"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"connection failed: {exc or type(exc).__name__}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot read the text ({exc.encoding}): {exc.reason} at byte {exc.start}"
    return None


def _where(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "the server"
    return f"{url.scheme}://{url.host}:{url.port}" if url.port else f"{url.scheme}://{url.host}"


def fail(exc: SensornetError | pydantic.ValidationError, console: Console) -> NoReturn:
    """For commands that catch their own expected errors: the same one line, exit 1
    (also under Typer's test runner, which does not pass through ``run_with_boundary``)."""
    console.print(f"[red]error:[/red] {escape(describe(exc) or str(exc))}", soft_wrap=True)
    raise typer.Exit(EXIT_ERROR) from exc


def run_with_boundary(app: Callable[[], object], console: Console, argv: list[str]) -> NoReturn:
    """Run the Typer app; ``--debug`` anywhere in ``argv`` is taken out and keeps
    tracebacks."""
    debug = "--debug" in argv
    if debug:
        argv[:] = [a for a in argv if a != "--debug"]
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except BaseException as exc:
        line = describe(exc)
        if debug or line is None:
            console.print(traceback.format_exc(), markup=False, highlight=False)
        if line is None:
            console.print(
                "[red]error:[/red] an unexpected error (a bug): please report it", soft_wrap=True
            )
            sys.exit(EXIT_BUG)
        hint = "" if debug else " [dim](--debug shows the traceback)[/dim]"
        console.print(f"[red]error:[/red] {escape(line)}{hint}", soft_wrap=True)
        sys.exit(EXIT_ERROR)
    sys.exit(0)
