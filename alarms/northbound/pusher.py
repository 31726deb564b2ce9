"""The pusher process: one ``Worker`` per active subscription, kept in step with the
registry (a subscription registered, paused, resumed or deleted through the API is picked
up within ``RELOAD_S``), and the registry's sensors for filters on status events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from alarms.northbound.metrics import PusherMetrics, serve_metrics
from alarms.northbound.worker import PushConfig, Worker
from sensornet.catalogue import Catalogue, load_catalogue
from sensornet.influx import InfluxClient, influx_client
from sensornet.northbound import store
from sensornet.northbound.late import NOTE_MARGIN_S
from sensornet.northbound.secretbox import SecretBox, box_from_settings
from sensornet.northbound.signing import secret_key
from sensornet.registry.store import DeviceInfo, load_devices, open_registry
from sensornet.settings import Settings

log = logging.getLogger("sensornet.northbound")

RELOAD_S = 1.0
DEVICES_RELOAD_S = 10.0


class Pusher:
    def __init__(
        self,
        influx: InfluxClient,
        engine: AsyncEngine,
        box: SecretBox,
        http: httpx.AsyncClient,
        catalogue: Catalogue,
        config: PushConfig,
        metrics: PusherMetrics | None = None,
    ) -> None:
        self.influx, self.engine, self.box, self.http = influx, engine, box, http
        self.catalogue, self.config = catalogue, config
        self.metrics = metrics or PusherMetrics()
        self.workers: dict[str, tuple[store.Subscription, asyncio.Task[None]]] = {}
        self.synced = False  # the last look at the registry worked (readiness)
        self._devices: Mapping[str, DeviceInfo] = {}
        self._devices_at = 0.0

    def devices(self) -> Mapping[str, DeviceInfo]:
        return self._devices

    async def sync(self) -> None:
        """Start, stop and restart workers to match the registry."""
        if time.monotonic() - self._devices_at > DEVICES_RELOAD_S:
            self._devices = await load_devices(self.engine)
            self._devices_at = time.monotonic()
        subs = {s.id: s for s in await store.list_subscriptions(self.engine)}
        for sub_id, (running, task) in list(self.workers.items()):
            now = subs.get(sub_id)
            changed = now is None or now.state != store.ACTIVE or now.spec != running.spec
            if changed or task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                del self.workers[sub_id]
                if now is None:
                    self.metrics.forget(sub_id)
        for sub_id, sub in subs.items():
            self.metrics.paused.labels(sub_id).set(int(sub.state == store.PAUSED))
            if sub.state != store.ACTIVE or sub_id in self.workers:
                continue
            try:
                key = secret_key(self.box.open(sub.secret_sealed))
            except Exception as exc:  # a key replaced, not rotated: say so, keep others going
                log.error("alarm: northbound subscription %s cannot sign: %s", sub_id, exc)
                continue
            worker = Worker(
                sub, key, self.influx, self.engine, self.http, self.catalogue, self.devices,
                self.config, self.metrics,
            )  # fmt: skip
            self.workers[sub_id] = (sub, asyncio.create_task(worker.run(), name=f"nb-{sub_id}"))

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.sync()
                    self.synced = True
                except Exception as exc:  # the registry away: keep the workers, try again
                    self.synced = False
                    log.warning("northbound: registry read failed: %s", exc)
                if ready is not None:
                    ready.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RELOAD_S)
        finally:
            for _, task in self.workers.values():
                task.cancel()
            await asyncio.gather(*(t for _, t in self.workers.values()), return_exceptions=True)
            self.workers.clear()


def push_config(settings: Settings) -> PushConfig:
    return PushConfig(
        settings.northbound_batch_size,
        settings.northbound_poll_s,
        settings.northbound_settle_s,
        settings.northbound_backoff_max_s,
        settings.northbound_pause_after_s,
        settings.northbound_source,
        settings.influx_timeout_s + NOTE_MARGIN_S,
        settings.northbound_lanes,
        settings.northbound_late_notes == "owed",
    )


async def quick_commits(engine: AsyncEngine) -> None:
    """On SQLite, the pusher's own connections commit without an fsync each
    (``synchronous=NORMAL``; the registry file is in WAL mode, ``open_registry``): a
    batch's record took 0.1-1 s on a busy disk, and the next batch waited. A killed pusher
    loses nothing (the WAL is in the file system); a power cut may lose the last records,
    whose batches are then sent again with the same event ids (docs/northbound.md).
    PostgreSQL: unchanged."""
    if engine.dialect.name != "sqlite":
        return

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    await engine.dispose()  # connections made before the listener are not reused


@contextlib.asynccontextmanager
async def pusher_from(settings: Settings) -> AsyncIterator[Pusher]:
    """The pusher and what it owns (InfluxDB read client, registry, HTTP client)."""
    timeout = httpx.Timeout(settings.northbound_timeout_s)
    async with (
        influx_client(settings, read_only=True) as influx,
        open_registry(settings.registry_database_url) as engine,
        httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
    ):
        await quick_commits(engine)
        box = box_from_settings(settings)
        yield Pusher(influx, engine, box, http, load_catalogue(), push_config(settings))


async def run_pusher(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """The pusher wired from settings (``sensornet northbound``, the demo, tests)."""
    async with pusher_from(settings) as pusher:
        with serve_metrics(
            pusher.metrics,
            settings.northbound_metrics_port,
            settings.metrics_host,
            lambda: {"registry": pusher.synced},
        ):
            await pusher.run(stop, ready)
