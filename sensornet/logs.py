"""Logging for every process: plain text on a terminal (the default), or one JSON object
a line (``SENSORNET_LOG_FORMAT=json``) for journald, Loki or Elasticsearch, with the
request id (API) or batch id (ingester) of the work a record belongs to.

The ids live in context variables, so they follow the asyncio task that handles the
request or the batch, with nothing passed by hand. A formatter of our own (a dozen
lines on orjson) rather than python-json-logger: same output, one dependency fewer."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

import orjson

LogFormat = Literal["text", "json"]

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
batch_id: ContextVar[str | None] = ContextVar("batch_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUIET = ("httpx", "httpcore", "gmqtt", "aiormq", "aio_pika")  # a line per request or packet


class ContextFilter(logging.Filter):
    """Puts the current request and batch ids on every record (None when outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.batch_id = batch_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "batch_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: int, fmt: LogFormat = "text") -> None:
    """The root logger's one handler, on stderr; replaces what was there."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in QUIET:
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
