"""The ingester's run loop: batches by count and time, writes, then acknowledges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from ingest.deadletter import dead_letter_line
from ingest.mqtt_source import InboundMessage, MqttSource
from ingest.pipeline import Pipeline, Reject
from sensornet.catalogue import Catalogue
from sensornet.errors import (
    InfluxFatalError,
    InfluxPartialWriteError,
    InfluxTooLargeError,
    InfluxUnavailableError,
)
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines
from sensornet.registry.store import DeviceCache
from sensornet.settings import Settings
from sensornet.topics import ingest_filters

log = logging.getLogger("sensornet.ingest")


@dataclass
class IngestStats:
    received_messages: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    write_errors: Counter[str] = field(default_factory=Counter)


class Ingester:
    """One ingester process. Its MQTT identity is fixed so it comes back as itself."""

    def __init__(
        self,
        settings: Settings,
        influx: InfluxClient,
        devices: DeviceCache,
        catalogue: Catalogue,
    ) -> None:
        self.settings = settings
        self.influx = influx
        self.devices = devices
        self.pipeline = Pipeline(catalogue, devices.get, settings.topic_prefix)
        self.stats = IngestStats()
        self._pending: list[InboundMessage] = []
        self._batch_ready = asyncio.Event()

    def _on_message(self, message: InboundMessage) -> None:
        self._pending.append(message)
        if len(self._pending) >= self.settings.ingest_batch_size:
            self._batch_ready.set()

    def source(self) -> MqttSource:
        s = self.settings
        return MqttSource(
            host=s.mqtt_host,
            port=s.mqtt_port,
            client_id=s.ingest_client_id,
            username=s.mqtt_ingest_user,
            password=s.mqtt_ingest_password.get_secret_value(),
            topic_filters=ingest_filters(s.topic_prefix, s.ingest_share_group or None),
            on_message=self._on_message,
            session_expiry_s=s.ingest_session_expiry_s,
            receive_maximum=s.ingest_receive_maximum,
        )

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set, then write and ack what is in flight."""
        await self.devices.refresh(force=True)
        async with self.source() as source:
            log.info("ingester %s subscribed", self.settings.ingest_client_id)
            if ready is not None:
                ready.set()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.ingest_batch_interval_s):
                        await self._batch_ready.wait()
                await self.flush(source)
            await self.flush(source)

    async def flush(self, source: MqttSource) -> None:
        batch, self._pending = self._pending, []
        self._batch_ready.clear()
        if not batch:
            return
        await self.devices.refresh()
        now_ns = time.time_ns()
        result = self.pipeline.process(batch, now_ns)
        lines = result.lines + [
            dead_letter_line(r, now_ns + i) for i, r in enumerate(result.rejects)
        ]
        dead = await self._write_durably(lines)
        for line in dead:
            log.warning("influx refused line reason=influx_rejected line=%.200s", line)
        self.stats.received_messages += len(batch)
        self.stats.stored += len(result.stored) - len(dead)
        for reject in result.rejects:
            self.stats.rejected[reject.reason] += 1
            log.info(
                "reject device=%.64r reason=%s detail=%.200s",
                reject.device_id,
                reject.reason,
                reject.detail,
            )
        self.stats.batches += 1
        source.ack(batch)

    async def _write_durably(self, lines: list[str]) -> list[str]:
        """Write until InfluxDB has every line it will accept; returns refused lines."""
        if not lines:
            return []
        delay = 0.2
        while True:
            try:
                return await self._write_isolating(lines)
            except InfluxUnavailableError as exc:
                self.stats.write_errors["unavailable"] += 1
                log.warning("influx unavailable, retrying in %.1fs: %s", delay, exc)
            except InfluxFatalError as exc:
                self.stats.write_errors["fatal"] += 1
                log.error("influx refuses writes, operator action needed: %s", exc)
                delay = max(delay, 30.0)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 30.0)

    async def _write_isolating(self, lines: list[str]) -> list[str]:
        """400 keeps the good lines and names none of the bad: bisect to find them.
        413 splits the batch. Rewriting accepted lines is idempotent."""
        try:
            await self.influx.write(encode_lines(lines))
            return []
        except (InfluxPartialWriteError, InfluxTooLargeError) as exc:
            if isinstance(exc, InfluxPartialWriteError):
                self.stats.write_errors["partial"] += 1
            if len(lines) == 1:
                if isinstance(exc, InfluxTooLargeError):
                    raise
                return lines
            half = len(lines) // 2
            return await self._write_isolating(lines[:half]) + await self._write_isolating(
                lines[half:]
            )


__all__ = ["IngestStats", "Ingester", "Reject"]
