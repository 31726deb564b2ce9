"""One subscription's delivery loop: read a page after the cursor, send it, and only once
the receiver answered 2xx move the cursor (and count the events) in one transaction.

Batches of one subscription go one at a time, so a receiver sees each sensor's events in
order; the next page is read while the current one is on the wire. A failing receiver is
retried with backoff (``retry``) with the same batch (same ``webhook-id``, same event ids);
once it has been failing for ``pause_after_s`` the subscription is paused with an alarm
and the loop ends: no retry for ever, nothing skipped either (the cursor stays)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from alarms.northbound.metrics import PusherMetrics
from alarms.northbound.retry import backoff_s
from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient
from sensornet.northbound import store
from sensornet.northbound.encode import Item, batch
from sensornet.northbound.envelope import CONTENT_TYPE, run_id
from sensornet.northbound.events import Cursor, event_id
from sensornet.northbound.late import creation_hold_s
from sensornet.northbound.late_reads import END as LATE_END
from sensornet.northbound.late_reads import LATE_STREAM, first_late_alarm, read_late
from sensornet.northbound.signing import sign_headers
from sensornet.northbound.sources import (
    NOTED,
    WRITE_STAMPED,
    Page,
    next_window,
    read_aggregates,
    read_page,
)
from sensornet.northbound.spec import Kind
from sensornet.registry.store import DeviceInfo

log = logging.getLogger("sensornet.northbound")

#: Points stamped when written (status, alarm changes) are read this long after.
WRITE_STAMPED_SETTLE_NS = 1_000_000_000
#: Pages of one stream taken in a row before the next stream gets its turn.
PAGES_PER_TURN = 20
#: Requests one InfluxDB read feeds (fewer, larger reads: each has a fixed cost).
PAGE_BATCHES = 10
#: Time span of a stream's first read; then sized to bring about one page (``next_window``).
FIRST_WINDOW_NS = 60_000_000_000
#: Pages read ahead of the one being sent (their rows are on the way to bodies meanwhile).
READ_AHEAD = 2
#: Acknowledged pages that may wait for their record while one is being written.
MAX_UNRECORDED = 2


#: A page cut into lanes of requests (events, body), and the page.
_Page = tuple[list[list[tuple[list[Item], bytes]]], Page]


def lane(key: str, lanes: int) -> int:
    """The lane a sensor's (a key's) events always take."""
    return zlib.crc32(key.encode()) % lanes


class Paused(Exception):
    """The subscription was paused: its worker ends."""


@dataclass(frozen=True, slots=True)
class PushConfig:
    batch_size: int
    poll_s: float
    settle_s: float
    backoff_max_s: float
    pause_after_s: float
    source: str
    note_settle_s: float = 15.0  # late notes are read this long after they were written
    #: requests in flight, each for its own share of the sensors (a sensor's events always
    #: go the same way, one request after the other: their order is kept)
    lanes: int = 1
    #: the ingesters note late points only while someone could be owed them: a new
    #: subscription's first read may have to wait (sensornet.northbound.late)
    hold_new: bool = True


def per_minute(items: list[Item]) -> dict[int, int]:
    """Events per minute of their time (items are in time order: one bisection a minute)."""
    out: dict[int, int] = {}
    i, n = 0, len(items)
    while i < n:
        minute = items[i][0] // 60_000_000_000
        j = bisect.bisect_left(items, (minute + 1) * 60_000_000_000, i, n, key=_time)
        out[minute] = j - i
        i = j
    return out


def _time(it: Item) -> int:
    return it[0]


class Worker:
    def __init__(
        self,
        subscription: store.Subscription,
        key: bytes,
        influx: InfluxClient,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        catalogue: Catalogue,
        devices: Callable[[], Mapping[str, DeviceInfo]],
        config: PushConfig,
        metrics: PusherMetrics,
    ) -> None:
        self.sub, self.key, self.influx, self.engine = subscription, key, influx, engine
        self.http, self.catalogue, self.devices = http, catalogue, devices
        self.config, self.metrics = config, metrics
        self.cursors: dict[str, Cursor] = {}
        self.windows: dict[str, int] = {}  # time span of the next read, per kind
        self._lane_of: dict[str, int] = {}  # a key's lane

    async def _creation_hold(self) -> None:
        """Wait until the ingesters' unnoted late points this subscription could be owed
        are all stored (``creation_hold_s``); a subscription older than that: no wait."""
        if not self.config.hold_new or not {"readings", "status"} & set(self.sub.spec.kinds):
            return  # alarm changes and aggregates: the ingester notes none of them
        created_ns = int(self.sub.created_at.timestamp() * 1e9)
        hold_s = creation_hold_s(
            self.sub.start_ns, created_ns, self.config.settle_s, self.config.note_settle_s
        )
        wait_s = created_ns / 1e9 + hold_s - time.time()
        if wait_s > 0:
            log.info("northbound %s: first read in %.1f s (late notes)", self.sub.id, wait_s)
            await asyncio.sleep(wait_s)

    async def run(self) -> None:
        """Deliver until cancelled or paused; a failure to read InfluxDB or the registry
        is logged and tried again (nothing moves meanwhile)."""
        self.metrics.paused.labels(self.sub.id).set(0)
        await self._creation_hold()
        attempt = 0
        while True:
            try:
                if not self.cursors:
                    self.cursors = await store.cursors(self.engine, self.sub.id)
                moved = False
                for kind in self.sub.spec.kinds:
                    moved |= await self._turn(kind)
                if NOTED.intersection(self.sub.spec.kinds):
                    moved |= await self._late_turn()
                attempt = 0
                if not moved:
                    self.metrics.lag.labels(self.sub.id).set(0)
                    await asyncio.sleep(self.config.poll_s)
            except Paused:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # InfluxDB or the registry: retry, skip nothing
                log.warning("northbound %s: %s; retrying", self.sub.id, exc)
                await asyncio.sleep(backoff_s(attempt, self.config.backoff_max_s))
                attempt += 1

    async def read(self, kind: Kind, after: Cursor) -> Page:
        now = time.time_ns()
        settle = int(self.config.settle_s * 1e9)
        if kind == "aggregates":
            return await read_aggregates(
                self.influx, self.sub.spec, self.catalogue, after, now, settle,
                self.config.batch_size * PAGE_BATCHES, self.config.source,
            )  # fmt: skip
        horizon = now - (WRITE_STAMPED_SETTLE_NS if kind in WRITE_STAMPED else settle)
        if kind == "alarms":  # an alarm change stored late: nothing after it goes first
            late = self.cursors.get(LATE_STREAM) or Cursor(self.sub.start_ns, "")
            first = await first_late_alarm(self.influx, self.sub.spec, self.sub.start_ns, late)
            if first is not None:
                horizon = min(horizon, first)
        target = self.config.batch_size * PAGE_BATCHES
        window = self.windows.get(kind, FIRST_WINDOW_NS)
        page = await read_page(
            self.influx, kind, self.sub.spec, self.catalogue, self.devices(), after, horizon,
            target, window, self.config.source, leave_noted=True,
        )  # fmt: skip
        self.windows[kind] = next_window(window, page.rows, target)
        return page

    async def _turn(self, kind: Kind) -> bool:
        """Up to ``PAGES_PER_TURN`` pages of one stream; True if its cursor moved.

        A reader task reads pages ahead (one InfluxDB read for ``PAGE_BATCHES`` requests,
        up to ``READ_AHEAD`` pages waiting, their bodies made), while this task sends them.
        A page's events are split by sensor into ``lanes`` lanes, each sending its batches
        one at a time on a connection of its own, so a sensor's events stay in order; once
        every lane has its 2xx the page is recorded (cursor and counts), while the next
        page is on the wire. Records are written in order, only after their 2xx."""
        pages: asyncio.Queue[_Page | Exception | None] = asyncio.Queue(READ_AHEAD)
        reader = asyncio.create_task(self._read_ahead(kind, pages))
        recorder = _Recorder(self, kind)
        moved = False
        try:
            while (got := await pages.get()) is not None:
                if isinstance(got, Exception):
                    raise got
                lanes, page = got
                if page.items:
                    self.metrics.lag.labels(self.sub.id).set(
                        max(0.0, time.time() - page.items[0][0] / 1e9)
                    )
                    await self._send_lanes(kind, lanes)
                assert page.upto is not None
                if page.items or page.rows:  # an empty stretch of time is not recorded
                    await recorder.add(page.upto, page.items)
                self.cursors[kind] = page.upto
                moved |= bool(page.items) or page.more
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await recorder.flush()  # a 2xx already came: its record must not be lost
        return moved

    async def _send_lanes(self, kind: Kind, lanes: list[list[tuple[list[Item], bytes]]]) -> None:
        async def lane(batches: list[tuple[list[Item], bytes]]) -> None:
            for items, body in batches:
                await self.deliver(kind, items, body)

        tasks = [asyncio.create_task(lane(b)) for b in lanes if b]
        try:
            await asyncio.gather(*tasks)
        finally:  # one lane failed for good (paused) or this task was cancelled
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_ahead(self, kind: Kind, pages: asyncio.Queue[_Page | Exception | None]) -> None:
        """Pages after the stream's cursor, each cut into lanes of batches with their
        bodies; None after the last, or the exception that stopped the reading."""
        after = self.cursors[kind]
        try:
            for _ in range(PAGES_PER_TURN):
                page = await self.read(kind, after)
                if page.upto is None:
                    break
                await pages.put((self._lanes(page), page))
                if not (page.items or page.more):
                    break
                after = page.upto
        except Exception as exc:  # the sender raises it, after what was read before
            await pages.put(exc)
            return
        await pages.put(None)

    def _lanes(self, page: Page) -> list[list[tuple[list[Item], bytes]]]:
        """The page's events split by sensor (key) into lanes, each cut into requests."""
        lanes = self.config.lanes
        split: list[list[Item]] = [[] for _ in range(lanes)]
        lane_of = self._lane_of
        for it in page.items:
            n = lane_of.get(it[1])
            if n is None:
                n = lane_of[it[1]] = lane(it[1], lanes)
            split[n].append(it)
        size = self.config.batch_size
        return [
            [(part[i : i + size], batch(part[i : i + size])) for i in range(0, len(part), size)]
            for part in split
        ]

    async def _late_turn(self) -> bool:
        """Points stored late (``sensornet.northbound.late``): read from the notes after
        this stream's cursor, sent in batches of one kind, then recorded at once (cursor
        and counts, each under its own kind). True if there is more to read at once."""
        after = self.cursors.get(LATE_STREAM) or Cursor(self.sub.start_ns, "")
        page = await read_late(
            self.influx, self.sub.spec, self.sub.start_ns, self.catalogue, self.devices(),
            after, time.time_ns() - int(self.config.note_settle_s * 1e9), self.cursors,
            self.config.batch_size * PAGE_BATCHES, self.config.source,
        )  # fmt: skip
        if page.upto is None:
            return False
        counts: dict[str, dict[int, int]] = {}
        size = self.config.batch_size
        i = 0
        while i < len(page.points):
            kind = page.points[i][0]
            items: list[Item] = []
            while i < len(page.points) and page.points[i][0] == kind and len(items) < size:
                items.append(page.points[i][1])
                i += 1
            await self.deliver(kind, items, batch(items))
            per = counts.setdefault(kind, {})
            for t, _, _ in items:
                per[t // 60_000_000_000] = per.get(t // 60_000_000_000, 0) + 1
        if page.points or page.upto.key != LATE_END:
            await store.record_delivery(
                self.engine, self.sub.id, LATE_STREAM, page.upto, {}, counted_as=counts
            )
        self.cursors[LATE_STREAM] = page.upto
        return bool(page.points) or page.full

    def _msg_id(self, kind: Kind, items: list[Item]) -> str:
        res = self.sub.spec.resolution
        first, last = items[0], items[-1]
        return run_id(
            self.sub.id, event_id(kind, first[1], first[0], res),
            event_id(kind, last[1], last[0], res), len(items),
        )  # fmt: skip

    async def deliver(self, kind: Kind, items: list[Item], body: bytes) -> None:
        """Send until the receiver answers 2xx; raises ``Paused`` once it has failed for
        ``pause_after_s``."""
        msg_id = self._msg_id(kind, items)
        attempt = 0
        while True:
            headers = sign_headers(self.key, msg_id, int(time.time()), body)
            headers["content-type"] = CONTENT_TYPE
            try:
                answer = await self.http.post(self.sub.spec.url, content=body, headers=headers)
                if 200 <= answer.status_code < 300:
                    self.metrics.delivered.labels(self.sub.id).inc(len(items))
                    return
                error = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:300]
            self.metrics.failed.labels(self.sub.id).inc()
            now = datetime.now(UTC)
            since = await store.record_failure(self.engine, self.sub.id, error, now)
            if (now - since).total_seconds() >= self.config.pause_after_s:
                reason = (
                    f"receiver failing since {since.isoformat()} "
                    f"(over {self.config.pause_after_s:.0f} s); last: {error}"
                )
                await store.pause(self.engine, self.sub.id, reason, store.PUSHER_ACTOR)
                self.metrics.paused.labels(self.sub.id).set(1)
                log.error(
                    "alarm: northbound subscription %s (%s) paused: %s",
                    self.sub.id, self.sub.spec.name, reason,
                )  # fmt: skip
                raise Paused(reason)
            wait = backoff_s(attempt, self.config.backoff_max_s)
            log.warning("northbound %s: %s; retry in %.1f s", self.sub.id, error, wait)
            await asyncio.sleep(wait)
            attempt += 1


class _Recorder:
    """Group commit of delivered pages: while one record is being written, the pages
    acknowledged meanwhile wait and go in the next transaction together (their cursor is
    the last one's, their counts summed). At most ``MAX_UNRECORDED`` wait; a crash resends
    them (same ids) and counts nothing twice, since counts move with the cursor."""

    def __init__(self, worker: Worker, kind: Kind) -> None:
        self.worker, self.kind = worker, kind
        self.waiting: list[tuple[Cursor, list[Item]]] = []
        self.task: asyncio.Task[None] | None = None

    async def add(self, upto: Cursor, items: list[Item]) -> None:
        self.waiting.append((upto, items))
        if self.task is not None and not self.task.done() and len(self.waiting) < MAX_UNRECORDED:
            return
        if self.task is not None:
            await self.task
        self.task = asyncio.create_task(self._write(self._take()))

    async def flush(self) -> None:
        if self.task is not None:
            await self.task
            self.task = None
        if self.waiting:
            await self._write(self._take())

    def _take(self) -> tuple[Cursor, dict[int, int]]:
        counts: dict[int, int] = {}
        for _, items in self.waiting:
            for minute, n in per_minute(items).items():
                counts[minute] = counts.get(minute, 0) + n
        upto = self.waiting[-1][0]
        self.waiting = []
        return upto, counts

    async def _write(self, record: tuple[Cursor, dict[int, int]]) -> None:
        upto, counts = record
        w = self.worker
        await store.record_delivery(w.engine, w.sub.id, self.kind, upto, counts)
