"""The ingester's run loop: batch by count and time, make durable, then acknowledge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from itertools import islice

from ingest.deadletter import count_dropped, dead_letter_lines, log_rejects, status_line
from ingest.inputs import BatchOutcome, Input, InputContext, build_inputs
from ingest.late_gate import keep_owed_fresh, read_owed
from ingest.metrics import IngestStats, platform_lines
from ingest.pipeline import BatchResult, Pipeline, Reject
from ingest.spool import Spool
from ingest.writer import DurableWriter, WriteAborted
from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines
from sensornet.logs import batch_id
from sensornet.mqtt_wire import InboundMessage
from sensornet.northbound.late import LateNotes
from sensornet.registry.store import DeviceCache
from sensornet.settings import Settings
from sensornet.unknown_keys import unknown_key_lines

log = logging.getLogger("sensornet.ingest")

REGISTRY_CHECK_S = 0.5  # how often the registry cache is asked (it refreshes when due)
REGISTRY_WAIT_S = 30.0  # a registry slower than this counts as unreachable
LETTERS_PER_WRITE = 10_000  # dead-letter lines written at once (each at most ~22 KB)


class Ingester:
    """One ingester process: the inputs named in settings (``ingest.inputs``) feed one
    pipeline and one durable writer. Its MQTT identity is fixed so it comes back as itself."""

    def __init__(
        self,
        settings: Settings,
        influx: InfluxClient,
        devices: DeviceCache,
        catalogue: Catalogue,
    ) -> None:
        self._batch_seq = 0
        self.settings = settings
        self.influx = influx
        self.devices = devices
        self.catalogue = catalogue
        self.pipeline = Pipeline(
            catalogue,
            devices.get,
            settings.topic_prefix,
            settings.ingest_max_payload_bytes,
            is_gateway=devices.is_gateway,
            resolve=devices.resolve,
            health_interval_ns=round(settings.device_health_interval_s * 1e9),
        )
        self.stats = IngestStats()
        self.spool = Spool(
            settings.state_dir / "spool" / settings.ingest_client_id, settings.spool_max_bytes
        )
        self._pending: list[InboundMessage] = []
        self._pending_bytes = 0
        self._inputs: list[Input] = []
        self._paused = False
        # A batch must fill while earlier ones are unacknowledged, or it only ever closes
        # on the timer: cut it at the share of receive-maximum left for it.
        s = settings
        self._batch_messages = max(
            1, min(s.ingest_batch_size, s.ingest_receive_maximum // (s.ingest_writes_in_flight + 1))
        )
        self._batch_ready = asyncio.Event()
        self._draining = False

    def _on_messages(self, messages: list[InboundMessage], size: int) -> None:
        self._pending += messages
        self._pending_bytes += size
        stats = self.stats
        stats.pending_bytes = self._pending_bytes
        stats.pending_bytes_peak = max(stats.pending_bytes_peak, self._pending_bytes)
        if self._full():
            self._batch_ready.set()
            if self._pending_bytes >= 2 * self.settings.ingest_batch_bytes and not self._paused:
                # The memory bound (receive-maximum is not one: packs carry many readings,
                # and Mosquitto 2.0.11 stops honouring it once acks flow): every input stops
                # taking messages until this batch is taken.
                self._pause()

    def _pause(self) -> None:
        self._paused = True
        for way_in in self._inputs:
            way_in.pause()

    def _full(self) -> bool:
        return (
            len(self._pending) >= self._batch_messages
            or self._pending_bytes >= self.settings.ingest_batch_bytes
        )

    def _take_batch(self) -> list[InboundMessage]:
        """One batch's worth of messages and bytes at most: a socket read can bring more
        than that, and one oversized batch stalls the pipeline behind it."""
        pending = self._pending
        limit = self.settings.ingest_batch_bytes
        if len(pending) <= self._batch_messages and self._pending_bytes <= limit:
            count, size = len(pending), self._pending_bytes  # all of it, the common case
        else:
            count, size = 0, 0
            most = min(len(pending), self._batch_messages)
            while count < most and size < limit:
                size += len(pending[count].payload)
                count += 1
        batch = pending[:count]
        del pending[:count]
        self._pending_bytes -= size
        self.stats.pending_bytes = self._pending_bytes
        if not self._full():
            self._batch_ready.clear()
        if (
            self._paused
            and not self._draining
            and self._pending_bytes < 2 * self.settings.ingest_batch_bytes
        ):
            self._paused = False
            for way_in in self._inputs:
                way_in.resume()
        return batch

    def inputs(self) -> list[Input]:
        """The ways in named by ``SENSORNET_INGEST_INPUTS``, all feeding ``_on_messages``."""
        context = InputContext(
            self.settings, self._on_messages, self.devices, self.stats, self._batch_ready.set
        )
        return build_inputs(self.settings.ingest_inputs, context)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set, then write and ack what is in flight."""
        await self.devices.refresh(force=True)
        late = LateNotes(
            [t.measurement for t in self.catalogue.types.values()],
            self.settings.northbound_settle_s,
            self.settings.ingest_client_id,
        )
        gated = self.settings.northbound_late_notes == "owed"  # else: every late point noted
        if gated:
            await read_owed(late, self.devices.engine)  # before the first batch
        writer = DurableWriter(self.influx, self.spool, self.stats, stop, late=late)
        side_tasks = [
            asyncio.create_task(writer.replay_forever(), name="spool-replay"),
            asyncio.create_task(self._report_forever(stop), name="platform-stats"),
            asyncio.create_task(self._refresh_registry_forever(stop), name="registry"),
        ]
        if gated:
            owed = keep_owed_fresh(late, self.devices.engine, stop)
            side_tasks.append(asyncio.create_task(owed, name="northbound-owed"))
        try:
            # A queued backlog flows in before the SUBACK does: the pause must already work
            # for it, and batches be written and acked meanwhile.
            self._inputs = inputs = self.inputs()
            async with contextlib.AsyncExitStack() as entered:
                for way_in in inputs:
                    await entered.enter_async_context(way_in)
                subscribed = asyncio.create_task(self._announce(inputs, ready))
                side_tasks.append(subscribed)
                in_flight: list[asyncio.Task[None]] = []
                while not stop.is_set():
                    if subscribed.done():
                        subscribed.result()  # raises if the broker never confirmed
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.settings.ingest_batch_interval_s):
                            await self._batch_ready.wait()
                    in_flight = self._reap(in_flight)
                    if len(in_flight) >= self.settings.ingest_writes_in_flight:
                        await in_flight[0]
                    previous = in_flight[-1] if in_flight else None
                    in_flight.append(asyncio.create_task(self.flush(inputs, writer, previous)))
                    # the flush takes its batch (and clears a hurry) before the next wait
                    await asyncio.sleep(0)
                # drain: read no more; write and ack, in order, all that was received
                self._draining = True
                self._pause()
                while self._pending:
                    previous = in_flight[-1] if in_flight else None
                    in_flight.append(asyncio.create_task(self.flush(inputs, writer, previous)))
                    await asyncio.sleep(0)  # the flush takes its batch
                await asyncio.gather(*in_flight)
        except WriteAborted as exc:
            log.warning("stopped with unacknowledged readings (the broker keeps them): %s", exc)
        finally:
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await self._report()

    @staticmethod
    def _reap(in_flight: list[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
        """The flushes still running. A finished one is read, not dropped: one that raised
        ends the loop (flush retries every failure itself, so that is ``WriteAborted``, on
        stop), and the flushes behind it never ack past it."""
        for task in in_flight:
            if task.done():
                task.result()
        return [t for t in in_flight if not t.done()]

    async def _refresh_registry_forever(self, stop: asyncio.Event) -> None:
        """The registry is read here, not in the flushes: when it is down or slow, batches
        go on with the cached sensors (alarm raised, failures counted) and never wait."""
        delay = REGISTRY_CHECK_S
        while not stop.is_set():
            try:
                async with asyncio.timeout(REGISTRY_WAIT_S):
                    await self.devices.refresh()
            except Exception as exc:
                self.stats.failures["registry"] += 1
                if not self.stats.registry_stale:
                    log.error(
                        "ALARM registry unreachable, using the %d cached sensors: %r",
                        len(self.devices),
                        exc,
                    )
                self.stats.registry_stale = True
                delay = min(delay * 2, 30.0)
            else:
                if self.stats.registry_stale:
                    log.warning("registry reachable again")
                self.stats.registry_stale = False
                delay = REGISTRY_CHECK_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()

    async def _announce(self, inputs: list[Input], ready: asyncio.Event | None) -> None:
        await asyncio.gather(*(way_in.ready() for way_in in inputs))
        names = ", ".join(way_in.name for way_in in inputs)
        log.info("ingester %s receiving (%s)", self.settings.ingest_client_id, names)
        if ready is not None:
            ready.set()

    async def flush(
        self, inputs: list[Input], writer: DurableWriter, previous: asyncio.Task[None] | None
    ) -> None:
        """Process and write one batch; ack it after ``previous`` acked (MQTT wants PUBACKs
        in arrival order), so the next batch is processed while this one is written. Every
        input is given the batch and acknowledges its own messages in it."""
        batch = self._take_batch()
        if not batch:
            return
        self._batch_seq += 1  # the batch's log records carry its id (this task's context)
        batch_id.set(f"{self.settings.ingest_client_id}-{self._batch_seq}")
        started = time.monotonic()
        if self.stats.first_message_at is None:
            self.stats.first_message_at = time.time()
        result, refused = await self._until_durable(batch, writer, time.time_ns())
        if previous is not None:
            await asyncio.shield(previous)
        outcome = BatchOutcome(result.rejects)
        for way_in in inputs:
            way_in.ack(batch, outcome)
        # counted once acknowledged, with no await between: the figures and the time of
        # the last ack always agree
        stats = self.stats
        stats.received_messages += len(batch)
        refused_by_reason = result.refused_by_reason()
        stats.received_readings += len(result.stored) + refused_by_reason.total()
        stats.stored += len(result.stored) - len(refused)
        stats.rejected.update(refused_by_reason)
        if result.unknown_keys:
            stats.count_unknown_keys(result.unknown_keys)
        stats.batches += 1
        stats.last_batch_at = time.time()
        stats.batch_latency_s = time.monotonic() - started
        stats.lag_s = (time.time_ns() - batch[0].arrived_ns) / 1e9
        stats.observe_batch(stats.batch_latency_s, stats.lag_s)

    async def _until_durable(
        self, batch: list[InboundMessage], writer: DurableWriter, now_ns: int
    ) -> tuple[BatchResult, list[int]]:
        """``_process_and_write`` until it succeeds. The writer retries and spools every
        failure it knows; anything else (a bug) is logged with its traceback, counted and
        retried with backoff while the batches behind wait: none is acked before this one,
        and none dropped. ``WriteAborted`` on stop: the broker keeps the batch."""
        delay = 0.5
        while True:
            try:
                return await self._process_and_write(batch, writer, now_ns)
            except WriteAborted:
                raise
            except Exception:
                self.stats.failures["internal"] += 1
                log.exception(
                    "ALARM a batch of %d messages was not made durable; retrying", len(batch)
                )
            if writer.stop.is_set():
                raise WriteAborted("stopping with a batch not made durable")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await writer.stop.wait()  # on stop: one more try, then give up
            delay = min(delay * 2, 30.0)

    async def _process_and_write(
        self, batch: list[InboundMessage], writer: DurableWriter, now_ns: int
    ) -> tuple[BatchResult, list[int]]:
        result = self.pipeline.process(batch, now_ns, self.devices.version)
        log_rejects(result.rejects)
        refused = await self._write(writer, result, now_ns)
        if refused:
            await self._dead_letter_refused(writer, result.lines, refused, result.stored, now_ns)
        return result, refused

    async def _write(self, writer: DurableWriter, result: BatchResult, now_ns: int) -> list[int]:
        """Make a batch's readings, status and dead letters durable; returns the indices
        of the readings InfluxDB refused. Dead letters go with the readings, and past one
        write's worth in writes of their own: they are made as they are written, so a
        batch of poison holds ``LETTERS_PER_WRITE`` of them at a time. Refused dead-letter,
        status and device-health lines are counted (``count_dropped``)."""
        lines = result.lines + [status_line(d, payload, now_ns) for d, payload in result.status]
        lines += result.health
        lines += unknown_key_lines(result.unknown_keys, now_ns)
        letters = dead_letter_lines(result.rejects, now_ns)
        lines += islice(letters, LETTERS_PER_WRITE)
        refused: list[int] = []
        dropped: list[str] = []
        for i in await writer.write(lines):
            if i < len(result.lines):
                refused.append(i)
            else:
                dropped.append(lines[i])
        while chunk := list(islice(letters, LETTERS_PER_WRITE)):
            dropped += [chunk[i] for i in await writer.write(chunk)]
        if dropped:
            count_dropped(self.stats, dropped)
        return refused

    async def _dead_letter_refused(
        self,
        writer: DurableWriter,
        lines: list[str],
        refused: list[int],
        stored: list[tuple[str, int | None]],
        now_ns: int,
    ) -> None:
        """Lines InfluxDB refused (e.g. a field type conflict) become dead letters too."""
        rejects = []
        for i in refused:
            sensor_id, seq = stored[i]
            rejects.append(
                Reject(
                    sensor_id,
                    "influx_rejected",
                    "InfluxDB refused the line",
                    "(batch)",
                    lines[i].encode(),
                    seq,
                )
            )
        self.stats.rejected["influx_rejected"] += len(rejects)
        letters = list(dead_letter_lines(rejects, now_ns + 1_000_000))
        dropped = await writer.write(letters)
        if dropped:
            count_dropped(self.stats, [letters[i] for i in dropped])

    async def _report_forever(self, stop: asyncio.Event) -> None:
        """From the start (a report says an ingester runs: ``simulate --report`` asks),
        then every interval."""
        while not stop.is_set():
            await self._report()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.ingest_report_interval_s):
                    await stop.wait()

    async def _report(self) -> None:
        """Platform figures into InfluxDB; best effort, they are not readings."""
        lines = platform_lines(self.stats, self.settings.ingest_client_id)
        try:
            await self.influx.write(encode_lines(lines))
        except Exception as exc:
            log.debug("platform stats not written: %s", exc)


__all__ = ["IngestStats", "Ingester"]
