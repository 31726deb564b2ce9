"""Thin async client for InfluxDB's v1 ``/write`` and ``/query`` endpoints.

These endpoints exist in InfluxDB 1.x, 2.x (v1 compatibility) and 3.x, so this one client
serves every version (docs/decisions.md). Each HTTP status maps to one error class, so callers
decide retry / split / spool / stop by type, not by parsing messages.

Queries go through ``sensornet.keepalive_http`` (keep-alive, no gzip): they are small and on the
query API's hot path, where httpx's ~1 ms of CPU per request was most of the API's cost.
Writes are large batches (per-request cost is negligible there) and stay on httpx.
"""

from __future__ import annotations

import gzip
import re
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx
import orjson

from sensornet.errors import (
    InfluxError,
    InfluxFatalError,
    InfluxPartialWriteError,
    InfluxRateLimitedError,
    InfluxTooLargeError,
    InfluxUnavailableError,
    InfluxUnexpectedStatusError,
)
from sensornet.keepalive_http import KeepAlivePool
from sensornet.settings import Settings

ParamValue = str | int | float | bool
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(name: str) -> str:
    """Identifiers cannot be bound parameters in InfluxQL: allow only plain names."""
    if not _IDENT.match(name):
        raise InfluxError(f"invalid InfluxDB identifier {name!r}")
    return name


class InfluxClient:
    """Owns one pooled HTTP connection set; use as ``async with InfluxClient(...)``."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        gzip_writes: bool = False,
        ca_file: Path | None = None,
    ) -> None:
        """``ca_file``: CA certificates to verify an https InfluxDB (default: the system's);
        writes and queries trust the same ones."""
        self.url = url.rstrip("/")
        trust = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
        self.database = database
        self.gzip_writes = gzip_writes
        auth = (username, password or "") if username else None
        self._http = httpx.AsyncClient(
            base_url=self.url,
            auth=auth,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            verify=trust or True,
        )
        self._queries = KeepAlivePool(
            self.url,
            max_connections=8,
            timeout_s=timeout_s,
            basic_auth=auth,
            ssl_context=trust,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._queries.aclose()
        await self._http.aclose()

    async def ping(self) -> bool:
        try:
            response = await self._http.get("/ping", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def create_database(self, name: str | None = None) -> None:
        await self.query(
            f'CREATE DATABASE "{check_identifier(name or self.database)}"', method="POST"
        )

    async def drop_database(self, name: str) -> None:
        await self.query(f'DROP DATABASE "{check_identifier(name)}"', method="POST")

    async def write(
        self,
        body: bytes,
        *,
        database: str | None = None,
        precision: str = "ns",
        retention_policy: str | None = None,
    ) -> None:
        """Write line protocol; raises a typed ``InfluxError`` on anything but 204."""
        params = {"db": database or self.database, "precision": precision}
        if retention_policy:
            params["rp"] = retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_writes:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(len(body))  # so httpx sends it whole, not chunked
        try:
            response = await self._http.post(
                "/write", params=params, content=_once(body), headers=headers
            )
        except httpx.TimeoutException as exc:
            raise InfluxUnavailableError(f"InfluxDB at {self.url} timed out on /write") from exc
        except httpx.HTTPError as exc:  # transport, protocol or decoding: no answer to trust
            raise InfluxUnavailableError(
                f"InfluxDB at {self.url} unreachable: {exc.__class__.__name__}"
            ) from exc
        if response.status_code != 204:
            raise _status_error(
                "/write",
                self.url,
                response.status_code,
                response.text,
                response.headers.get("Retry-After"),
            )

    async def query(
        self,
        q: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        database: str | None = None,
        epoch: str = "ns",
        method: str = "GET",
    ) -> list[dict[str, Any]]:
        """Run InfluxQL with values bound as ``$name`` parameters; returns the series list
        of the first statement (``[]`` when nothing matched)."""
        body = await self.query_body(q, params, database=database, epoch=epoch, method=method)
        return first_series(body)

    def query_form(
        self,
        q: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        database: str | None = None,
        epoch: str = "ns",
    ) -> str:
        """The ``/query`` form (URL query or POST body) for ``q`` with bound ``params``."""
        form = f"q={_quoted(q)}&db={_quoted(database or self.database)}&epoch={_quoted(epoch)}"
        if params:
            form += "&params=" + quote(orjson.dumps(dict(params)).decode(), safe="")
        return form

    async def query_body(
        self,
        q: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        database: str | None = None,
        epoch: str = "ns",
        method: str = "GET",
    ) -> bytes:
        """As ``query``, but InfluxDB's JSON answer as it came (``first_series`` decodes
        it), for callers that can use the bytes themselves."""
        form = self.query_form(q, params, database=database, epoch=epoch)
        try:
            if method == "GET":
                answer = await self._queries.request("GET", "/query?" + form)
            else:
                answer = await self._queries.request("POST", "/query", form.encode())
        except TimeoutError as exc:
            raise InfluxUnavailableError(f"InfluxDB at {self.url} timed out on /query") from exc
        except OSError as exc:
            raise InfluxUnavailableError(
                f"InfluxDB at {self.url} unreachable: {exc.__class__.__name__}"
            ) from exc
        if answer.status != 200:
            raise _status_error("/query", self.url, answer.status, answer.text)
        return answer.body


def first_series(body: bytes) -> list[dict[str, Any]]:
    """The series of the first statement of a ``/query`` answer; raises ``InfluxError``
    when InfluxDB reported an error for it."""
    results = orjson.loads(body).get("results", [])
    if not results:
        return []
    first = results[0]
    if "error" in first:
        raise InfluxError(f"InfluxQL error: {first['error']}", 200, first["error"])
    series: list[dict[str, Any]] = first.get("series", [])
    return series


@lru_cache(maxsize=512)
def _quoted(q: str) -> str:
    """Query texts repeat (values are parameters), so each is percent-encoded once."""
    return quote(q, safe="")


async def _once(body: bytes) -> AsyncIterator[bytes]:
    """A write's body as a stream that lets go of it once sent. httpx 0.28 keeps each
    response and its request in a reference cycle (encode/httpx#3733), so a body handed
    over as bytes lived until the cyclic GC ran: a run of large writes (a batch of dead
    letters) held over a hundred megabytes that way."""
    yield body


#: A Retry-After longer than this is capped: the spool holds the readings meanwhile, and
#: an outage that long is one the operator hears about from the spool alarm anyway.
MAX_RETRY_AFTER_S = 60.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """An HTTP ``Retry-After`` (delay in seconds, or an HTTP date) as seconds from now,
    between 0 and ``MAX_RETRY_AFTER_S``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (now or time.time())
        except (TypeError, ValueError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _status_error(
    endpoint: str, url: str, status: int, text: str, retry_after: str | None = None
) -> InfluxError:
    """Every status maps to a class. A write answered with a status without a rule here
    is "unavailable" (retried, then spooled), never taken as stored nor dropped."""
    body = text[:2000]
    where = f"InfluxDB at {url} answered {status} on {endpoint}"
    if status == 400:
        return InfluxPartialWriteError(f"{where}: {body}", status, body)
    if status in (401, 403):
        # InfluxDB's answer names the right that is missing ("requires admin privilege")
        return InfluxFatalError(
            f"{where}: {body.strip()}; check this part's InfluxDB user "
            f"(SENSORNET_INFLUX_USER/PASSWORD; the API's SENSORNET_INFLUX_READ_USER/PASSWORD; "
            f"deploy/README.md)",
            status,
            body,
        )
    if status == 404:
        return InfluxFatalError(f"{where}: database missing? {body}", status, body)
    if status == 413:
        return InfluxTooLargeError(f"{where}: batch too large", status, body)
    if status == 429:
        seconds = retry_after_seconds(retry_after)
        return InfluxRateLimitedError(
            f"{where} (rate limited, retry after {seconds}s): {body}", status, body, seconds
        )
    if status >= 500:
        return InfluxUnavailableError(f"{where}: {body}", status, body)
    if endpoint == "/write":  # nothing says it was stored: retry, then spool
        return InfluxUnexpectedStatusError(
            f"{where}, a status with no rule here: handled as unavailable: {body}", status, body
        )
    return InfluxError(f"{where}: {body}", status, body)


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten InfluxDB series into row dicts (tags merged in)."""
    out: list[dict[str, Any]] = []
    for s in series:
        columns = s["columns"]
        tags = s.get("tags") or {}
        for values in s.get("values", []):
            row = dict(zip(columns, values, strict=True))
            row.update(tags)
            out.append(row)
    return out


def influx_client(settings: Settings, *, read_only: bool = False) -> InfluxClient:
    """The client every part builds from its settings (URL, database, credentials, CA).
    ``read_only``: as the API and Grafana, with ``SENSORNET_INFLUX_READ_USER`` when set."""
    if read_only:
        user, secret = settings.influx_reader
    else:
        user, secret = settings.influx_user, settings.influx_password
    return InfluxClient(
        settings.influx_url,
        settings.influx_db,
        username=user,
        password=secret.get_secret_value() if secret else None,
        timeout_s=settings.influx_timeout_s,
        ca_file=settings.influx_ca_file,
    )
