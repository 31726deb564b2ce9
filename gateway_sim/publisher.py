"""Live mode: every sensor reports at its type's interval (first report within seconds),
with a per-device ``seq`` counter, as flat JSON on its own readings topic."""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gmqtt
import orjson

from gateway_sim.signals import value_for
from sensornet.catalogue import Catalogue
from sensornet.lineprotocol import FieldValue
from sensornet.registry.store import DeviceInfo
from sensornet.topics import device_topic


@dataclass(frozen=True, slots=True)
class SentReading:
    sensor_id: str
    ts_ms: int
    seq: int
    values: dict[str, FieldValue]


@dataclass
class PublisherStats:
    sent: int = 0
    log: list[SentReading] = field(default_factory=list)


class LivePublisher:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        topic_prefix: str,
        fleet: Sequence[DeviceInfo],
        catalogue: Catalogue,
        first_report_within_s: float = 3.0,
        interval_scale: float = 1.0,
        keep_log: bool = False,
        seed: int = 151,
    ) -> None:
        self._host, self._port = host, port
        self._prefix = topic_prefix
        self._fleet = list(fleet)
        self._catalogue = catalogue
        self._first_within = first_report_within_s
        self._scale = interval_scale
        self._keep_log = keep_log
        self._rng = random.Random(seed)
        self.stats = PublisherStats()
        self._client = gmqtt.Client(f"sim-{seed}-{int(time.time())}", clean_session=True)
        self._client.set_auth_credentials(username, password)

    async def run(self, stop: asyncio.Event, max_rounds: int | None = None) -> None:
        """Publish until ``stop``; ``max_rounds`` bounds reports per sensor (for tests)."""
        await self._client.connect(self._host, self._port, keepalive=30)
        try:
            now = time.time()
            queue = [
                (now + self._rng.uniform(0, self._first_within), i) for i in range(len(self._fleet))
            ]
            heapq.heapify(queue)
            seqs = [0] * len(self._fleet)
            while queue and not stop.is_set():
                due, i = queue[0]
                wait = due - time.time()
                if wait > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=min(wait, 0.5))
                    except TimeoutError:
                        continue
                    break
                heapq.heappop(queue)
                self._publish(i, seqs[i])
                seqs[i] += 1
                if max_rounds is None or seqs[i] < max_rounds:
                    interval = self._catalogue.get(self._fleet[i].type).interval_s * self._scale
                    heapq.heappush(queue, (due + interval * self._rng.uniform(0.95, 1.05), i))
            await asyncio.sleep(0.2)  # let the last PUBACKs arrive
        finally:
            await self._client.disconnect()

    def _publish(self, i: int, seq: int) -> None:
        device = self._fleet[i]
        sensor_type = self._catalogue.get(device.type)
        ts_ms = time.time_ns() // 1_000_000
        values = {
            q.id: value_for(device.id, q, ts_ms / 1000) for q in sensor_type.quantities.values()
        }
        payload = orjson.dumps({"ts": ts_ms, "seq": seq, **values})
        self._client.publish(device_topic(self._prefix, device.id, "readings"), payload, qos=1)
        self.stats.sent += 1
        if self._keep_log:
            self.stats.log.append(SentReading(device.id, ts_ms, seq, values))
