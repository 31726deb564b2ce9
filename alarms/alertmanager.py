"""A thin async client of Alertmanager's v2 API: post alerts, list, create and expire
silences. Every failure is an ``AlertmanagerError`` (the runner logs it and tries again
next round: an Alertmanager down must never stop alarms being evaluated and recorded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from sensornet.errors import SensornetError


class AlertmanagerError(SensornetError):
    """Alertmanager did not answer, or refused a request (the message says which)."""


class AlertmanagerClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = await self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise AlertmanagerError(f"{method} {path}: {exc!r}") from exc
        if r.status_code >= 300:
            raise AlertmanagerError(f"{method} {path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        if alerts:
            await self._call("POST", "/api/v2/alerts", alerts)

    async def silences(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._call("GET", "/api/v2/silences")
        return found

    async def create_silence(self, silence: dict[str, Any]) -> str:
        answer = await self._call("POST", "/api/v2/silences", silence)
        return str(answer["silenceID"])

    async def expire_silence(self, silence_id: str) -> None:
        await self._call("DELETE", f"/api/v2/silence/{silence_id}")

    async def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._call("GET", "/api/v2/alerts")
        return found


@asynccontextmanager
async def alertmanager_client(
    url: str, timeout_s: float = 5.0
) -> AsyncIterator[AlertmanagerClient]:
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout_s) as http:
        yield AlertmanagerClient(http)
