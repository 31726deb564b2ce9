"""Making a batch durable: InfluxDB when it answers, the fsync'd spool when it does not.

How each InfluxDB answer is handled (docs/decisions.md, "Acknowledge after write"):
  204          stored
  400          partial write: the good lines stay; bisect to find the bad ones
  413          split the batch
  401/403/404  stop writing and raise the alarm; retry slowly (no storm), ack nothing
  429          wait its Retry-After (1 s if none, at most 60 s), within the retry budget;
               then spool: the replay, one writer, keeps honouring it
  5xx/timeout  retry with jittered backoff for a short budget, then spool and ack
  other        (e.g. 422, 3xx) nothing says it was stored: as 5xx

``write`` returns only once its lines are durable. While neither InfluxDB nor the spool
takes them (spool full, ENOSPC, EIO) it keeps trying, alarm raised and failures counted,
and the batch stays unacknowledged; the batches behind it wait for it, so acks stay in
order. Only stop ends that wait, with ``WriteAborted``: the broker keeps those readings.
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
from ingest.spool import Spool, SpoolCorruptError, SpoolFullError
from sensornet.errors import (
    InfluxFatalError,
    InfluxPartialWriteError,
    InfluxRateLimitedError,
    InfluxTooLargeError,
    InfluxUnavailableError,
    InfluxUnexpectedStatusError,
    SensornetError,
)
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines
from sensornet.northbound.late import LateNotes

log = logging.getLogger("sensornet.ingest")

FATAL_RETRY_S = 30.0
SPOOL_RETRY_S = 1.0  # a spool that cannot write: how often the batch tries again
RATE_LIMIT_WAIT_S = 1.0  # a 429 without Retry-After
NOT_READINGS = frozenset({DEAD_LETTER_MEASUREMENT, STATUS_MEASUREMENT})


class WriteAborted(SensornetError):
    """Stop came while a batch was not durable yet: it stays unacknowledged, with the
    broker, which delivers it again when the ingester is back."""


class DurableWriter:
    def __init__(
        self,
        influx: InfluxClient,
        spool: Spool,
        stats: IngestStats,
        stop: asyncio.Event,
        retry_budget_s: float = 3.0,
        late: LateNotes | None = None,
    ) -> None:
        """``late``: notes for the northbound pusher on points written late (each write,
        the spool's replay included, notes what is late when it is written)."""
        self.influx = influx
        self.late = late
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
        """Make ``lines`` durable; returns indices of lines InfluxDB refused as invalid.
        Returns only when they are durable; ``WriteAborted`` if stop comes first."""
        if not lines:
            return []
        while True:
            if not self.degraded:
                refused = await self._write_retrying(lines)
                if refused is not None:
                    return refused
            if self._spooled(lines):
                return []
            if self.stop.is_set():
                raise WriteAborted("stopping while neither InfluxDB nor the spool takes writes")
            await asyncio.sleep(SPOOL_RETRY_S)  # then InfluxDB again, if the replay found it

    async def _write_retrying(self, lines: list[str]) -> list[int] | None:
        """InfluxDB for ``retry_budget_s``: the refused indices, or None (and degraded:
        later batches go straight to the spool) when it stayed unavailable."""
        deadline = time.monotonic() + self.retry_budget_s
        delay = 0.1
        while True:
            try:
                return await self.write_isolating(lines)
            except InfluxUnavailableError as exc:
                wait = self._unavailable(exc, delay)
                if time.monotonic() + wait > deadline or "timed out" in str(exc):
                    log.warning("influx unavailable, spooling %d lines: %s", len(lines), exc)
                    self.degraded = True
                    return None
            except InfluxFatalError as exc:
                await self._refused(exc)
                continue
            await asyncio.sleep(wait)
            delay = min(delay * 2, 1.0)

    def _unavailable(self, exc: InfluxUnavailableError, delay: float) -> float:
        """Counts the failure by kind; returns how long to wait before trying again."""
        wait = delay * (0.5 + random.random())
        if isinstance(exc, InfluxRateLimitedError):
            self.stats.write_errors["rate_limited"] += 1
            asked = exc.retry_after_s
            return max(wait, RATE_LIMIT_WAIT_S if asked is None else asked)
        if isinstance(exc, InfluxUnexpectedStatusError):
            self.stats.write_errors["unexpected_status"] += 1
            log.warning("%s", exc)
        else:
            self.stats.write_errors["unavailable"] += 1
        return wait

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

    def _spooled(self, lines: list[str]) -> bool:
        """Into the spool; False when it cannot take them (full, ENOSPC, EIO): counted,
        alarm raised once until it takes writes again, readings left with the broker."""
        try:
            self.spool.append(encode_lines(lines))
        except (SpoolFullError, OSError) as exc:
            cause = "spool_full" if isinstance(exc, SpoolFullError) else "spool_write"
            self.stats.failures[cause] += 1
            if not self.stats.spool_failing:
                log.error(
                    "ALARM spool cannot take readings (they stay unacknowledged in the broker, "
                    "retried every %.0f s): %s",
                    SPOOL_RETRY_S,
                    exc,
                )
            self.stats.spool_failing = True
            return False
        if self.stats.spool_failing:
            log.warning("spool %s takes writes again", self.spool.directory)
            self.stats.spool_failing = False
        self.stats.spooled += len(lines)
        self._sync_spool_stats()
        return True

    async def write_isolating(self, lines: list[str], offset: int = 0) -> list[int]:
        """400 keeps the good lines and names none of the bad: bisect to find them.
        413 splits. Rewriting lines InfluxDB already took is idempotent."""
        try:
            await self._write_noting(lines)
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

    async def _write_noting(self, lines: list[str]) -> None:
        """One write, with the notes of its late points in the same request; a write that
        took long enough for more of its points to become late sends their notes after
        (sensornet.northbound.late)."""
        if self.late is None:
            await self.influx.write(encode_lines(lines))
            return
        started = time.time_ns()
        notes = self.late.notes(lines, started)
        await self.influx.write(encode_lines(lines + notes if notes else lines))
        now = time.time_ns()
        if now - started >= self.late.youngest:
            more = self.late.notes(lines, now, noted_at=started)
            if more:
                await self.influx.write(encode_lines(more))

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
        on their own connection meanwhile. Only stop ends it: a segment that does not read
        back is quarantined with an alarm and replay goes on; any other failure is counted
        and retried with backoff."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                if not await self._replay_oldest():
                    await asyncio.sleep(0.5)  # nothing spooled
                delay = 0.5
                continue
            except WriteAborted:
                return
            except SpoolCorruptError as exc:
                self.stats.failures["spool_corrupt"] += 1
                log.error("ALARM %s", exc)
                self._sync_spool_stats()
                continue
            except InfluxFatalError as exc:
                try:
                    await self._refused(exc)
                except WriteAborted:
                    return
                continue
            except InfluxUnavailableError as exc:
                wait = self._unavailable(exc, delay)
            except Exception:
                self.stats.failures["internal"] += 1
                log.exception("ALARM spool replay failed; retrying")
                wait = delay * (0.5 + random.random())
            await asyncio.sleep(wait)
            delay = min(delay * 2, 10.0)

    async def _replay_oldest(self) -> bool:
        """Replay the oldest segment; False when the spool is empty."""
        item = self.spool.oldest()
        if item is None:
            self.degraded = False
            return False
        segment, lines = item
        refused = await self.write_isolating(lines) if lines else []
        self.degraded = False
        if refused:
            await self._dead_letter_refused([lines[i] for i in refused])
        self.spool.remove(segment)
        self.stats.replayed += len(lines) - len(refused)
        self._sync_spool_stats()
        return True
