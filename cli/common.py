"""What every command shares: settings from env/.env with flags on top, logging, and
turning a platform error into a readable message and exit code 1."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from sensornet.errors import SensornetError
from sensornet.logs import configure_logging
from sensornet.settings import Settings

console = Console(stderr=True)

StateDir = Annotated[Path | None, typer.Option(help="State directory (SENSORNET_STATE_DIR)")]


def settings_from(**overrides: Any) -> Settings:
    """Settings from env/.env with CLI flags (non-None) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def setup_logging(verbose: bool, settings: Settings | None = None) -> None:
    """Text or JSON (``SENSORNET_LOG_FORMAT``; ``--json`` makes it JSON: a daemon's
    machine output is its log), INFO with ``--verbose`` else WARNING."""
    fmt = "json" if json_mode() else (settings or Settings()).log_format
    configure_logging(logging.INFO if verbose else logging.WARNING, fmt)


def run_or_exit(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except SensornetError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


# --- machine output and progress (issue 22) -------------------------------------------
# ``--json`` is added to every command in one place (``add_json_flag``, called by
# ``cli.main``) rather than to each function: it sets this flag, and the few commands
# whose default output is not already JSON ask ``json_mode()``. Machine output is one JSON
# document on stdout; human text and progress go to stderr (``console``).
_json_mode = False


def json_mode() -> bool:
    """True when the command line asked for ``--json``."""
    return _json_mode


def set_json_mode(value: bool) -> None:
    global _json_mode
    _json_mode = value


def emit(value: Any, human: str | None = None) -> None:
    """Print a command's result: JSON on stdout when ``--json`` is given or when the
    command has no human form (``human`` None), else ``human`` on stderr ("" when the
    command already said it line by line)."""
    if human is None or json_mode():
        typer.echo(json.dumps(value, ensure_ascii=False, default=str))
    elif human:
        console.print(human, soft_wrap=True)


JSON_HELP = "Machine output: one JSON document on stdout (human text and progress on stderr)."


def add_json_flag(app: typer.Typer) -> typer.Typer:
    """Give every command of ``app`` and its sub-apps a ``--json`` flag that sets
    ``json_mode()``; commands that declare their own (``simulate``, the benchmarks) keep
    theirs. Idempotent, so tests may call it on the app too."""
    for info in app.registered_commands:
        if info.callback is not None and not _takes_json(info.callback):
            info.callback = _with_json(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            add_json_flag(group.typer_instance)
    return app


def _takes_json(func: Callable[..., Any]) -> bool:
    for param in inspect.signature(func, eval_str=True).parameters.values():
        for meta in getattr(param.annotation, "__metadata__", ()):
            decls = (*(getattr(meta, "param_decls", None) or ()), getattr(meta, "default", None))
            if "--json" in decls:
                return True
    return False


def _with_json(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with one more keyword parameter, ``--json``, taken off before it is
    called. Typer reads the parameters from ``__signature__``."""

    def command(*args: Any, **kwargs: Any) -> Any:
        set_json_mode(bool(kwargs.pop("json_output_", False)))
        return func(*args, **kwargs)

    signature = inspect.signature(func, eval_str=True)
    flag = inspect.Parameter(
        "json_output_",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option("--json", help=JSON_HELP)],
    )
    params = [*signature.parameters.values(), flag]
    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = func.__name__
    command.__qualname__ = func.__qualname__
    command.__doc__ = func.__doc__
    command.__module__ = func.__module__
    return command


@contextmanager
def progress(label: str, total: int | None = None, unit: str = "") -> Iterator[Progress]:
    """A progress bar on stderr (never stdout; rich draws it live on a terminal and once,
    at the end, elsewhere). Its one task is ``bar.task_ids[0]``; ``step`` updates it."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        bar.add_task(label, total=total)
        yield bar


def step(bar: Progress, done: int, total: int, description: str | None = None) -> None:
    """A progress callback's body: ``done`` of ``total`` on the bar's one task."""
    task = bar.task_ids[0]
    if description is None:
        bar.update(task, completed=done, total=total)
    else:
        bar.update(task, completed=done, total=total, description=description)


@contextmanager
def waiting(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the time waited, on stderr, for a wait of unknown length (a service
    starting, an account settling); yields a function that changes what it says."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda text: bar.update(task, description=text)
