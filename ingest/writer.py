"""Making a batch durable: InfluxDB when it answers, the fsync'd spool when it does not.

How each InfluxDB answer is handled (docs/decisions.md, "Acknowledge after write"):
  204          stored
  400          partial write: the good lines stay; bisect to find the bad ones
  413          split the batch
  401/403/404  stop writing and raise the alarm; retry slowly (no storm), ack nothing
  5xx/timeout  retry with jittered backoff for a short budget, then spool and ack
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from ingest.deadletter import (
    DEAD_LETTER_MEASUREMENT,
    STATUS_MEASUREMENT,
    count_dropped,
    dead_letter_lines,
    measurement_of,
    refused_line_reject,
)
from ingest.metrics import IngestStats
from ingest.spool import Spool
from sensornet.errors import (
    InfluxFatalError,
    InfluxPartialWriteError,
    InfluxTooLargeError,
    InfluxUnavailableError,
    SensornetError,
)
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines

log = logging.getLogger("sensornet.ingest")

FATAL_RETRY_S = 30.0
NOT_READINGS = frozenset({DEAD_LETTER_MEASUREMENT, STATUS_MEASUREMENT})


class WriteAborted(SensornetError):
    """Shutdown came while InfluxDB refused writes: the batch stays unacknowledged."""


class DurableWriter:
    def __init__(
        self,
        influx: InfluxClient,
        spool: Spool,
        stats: IngestStats,
        stop: asyncio.Event,
        retry_budget_s: float = 3.0,
    ) -> None:
        self.influx = influx
        self.spool = spool
        self.stats = stats
        self.stop = stop
        self.retry_budget_s = retry_budget_s
        # While InfluxDB is failing, new batches go straight to the spool behind the older
        # ones instead of each waiting out its own retries.
        self.degraded = len(spool) > 0
        self._sync_spool_stats()

    def _sync_spool_stats(self) -> None:
        self.stats.spool_bytes = self.spool.bytes
        self.stats.spool_readings = self.spool.lines
        near = self.spool.near_full
        if near and not self.stats.spool_near_full:
            log.error(
                "ALARM spool near full: %d of %d bytes", self.spool.bytes, self.spool.max_bytes
            )
        self.stats.spool_near_full = near

    async def write(self, lines: list[str]) -> list[int]:
        """Make ``lines`` durable; returns indices of lines InfluxDB refused as invalid."""
        if not lines:
            return []
        if self.degraded:
            await self._to_spool(lines)
            return []
        deadline = time.monotonic() + self.retry_budget_s
        delay = 0.1
        while True:
            try:
                return await self.write_isolating(lines)
            except InfluxUnavailableError as exc:
                self.stats.write_errors["unavailable"] += 1
                if time.monotonic() + delay > deadline or "timed out" in str(exc):
                    log.warning("influx unavailable, spooling %d lines: %s", len(lines), exc)
                    self.degraded = True
                    await self._to_spool(lines)
                    return []
            except InfluxFatalError as exc:
                await self._refused(exc)
                continue
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    async def _refused(self, exc: InfluxFatalError) -> None:
        self.stats.write_errors["fatal"] += 1
        if not self.stats.influx_refusing:
            log.error("ALARM influx refuses writes, operator action needed: %s", exc)
        self.stats.influx_refusing = True
        try:
            async with asyncio.timeout(FATAL_RETRY_S):
                await self.stop.wait()
        except TimeoutError:
            return
        raise WriteAborted("stopping while InfluxDB refuses writes") from exc

    async def _to_spool(self, lines: list[str]) -> None:
        body = encode_lines(lines)
        while True:
            try:
                self.spool.append(body)
                break
            except SensornetError as exc:  # full: keep the readings in the broker
                log.error("ALARM %s", exc)
                if self.stop.is_set():
                    raise WriteAborted(str(exc)) from exc
                await asyncio.sleep(1.0)
        self.stats.spooled += len(lines)
        self._sync_spool_stats()

    async def write_isolating(self, lines: list[str], offset: int = 0) -> list[int]:
        """400 keeps the good lines and names none of the bad: bisect to find them.
        413 splits. Rewriting lines InfluxDB already took is idempotent."""
        try:
            await self.influx.write(encode_lines(lines))
            self.stats.influx_refusing = False
            return []
        except (InfluxPartialWriteError, InfluxTooLargeError) as exc:
            kind = "partial" if isinstance(exc, InfluxPartialWriteError) else "too_large"
            self.stats.write_errors[kind] += 1
            if len(lines) == 1:
                if isinstance(exc, InfluxTooLargeError):
                    return [offset]
                log.warning("influx refused line: %s", exc.body[:300])
                return [offset]
            half = len(lines) // 2
            first = await self.write_isolating(lines[:half], offset)
            return first + await self.write_isolating(lines[half:], offset + half)

    async def _dead_letter_refused(self, refused: list[str]) -> None:
        """Spooled reading lines InfluxDB refused become dead letters; refused dead-letter
        and status lines are counted and logged (a letter of a letter could loop)."""
        readings: list[str] = []
        letters_or_status: list[str] = []
        for line in refused:
            is_reading = measurement_of(line) not in NOT_READINGS
            (readings if is_reading else letters_or_status).append(line)
        if letters_or_status:
            count_dropped(self.stats, letters_or_status)
        rejects = [
            refused_line_reject(line, "spooled line refused by InfluxDB", "(spool)")
            for line in readings
        ]
        self.stats.rejected["influx_rejected"] += len(rejects)
        letters = list(dead_letter_lines(rejects, time.time_ns()))
        dropped = await self.write(letters)
        if dropped:
            count_dropped(self.stats, [letters[i] for i in dropped])

    async def replay_forever(self) -> None:
        """Drain the spool oldest first while InfluxDB answers; live batches keep flowing
        on their own connection meanwhile."""
        delay = 0.5
        while not self.stop.is_set():
            item = self.spool.oldest()
            if item is None:
                self.degraded = False
                await asyncio.sleep(0.5)
                continue
            segment, body = item
            lines = body.decode().splitlines()
            try:
                refused = await self.write_isolating(lines)
            except InfluxUnavailableError:
                self.stats.write_errors["unavailable"] += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)
                continue
            except InfluxFatalError as exc:
                try:
                    await self._refused(exc)
                except WriteAborted:
                    return
                continue
            delay = 0.5
            self.degraded = False
            if refused:
                await self._dead_letter_refused([lines[i] for i in refused])
            self.spool.remove(segment)
            self.stats.replayed += len(lines) - len(refused)
            self._sync_spool_stats()
