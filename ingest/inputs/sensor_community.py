"""The Sensor.Community pull input: the public data API's records of the district's
community air-quality nodes, fetched every ``sc_pull_interval_s``.

``GET <sc_pull_url>/airrohr/v1/filter/area=<lat>,<lon>,<km>`` answers every measurement
of the last 5 minutes within the circle (the API's documented area filter); records
outside the district's bounding box are dropped here (the circle is wider), and records
already delivered are skipped, so a measurement is delivered once although it is in
about five answers in a row. The rest go to the pipeline as one message of format
``sensor.community.api`` (``sensornet/sensor_community.py``), where each record is a
reading of the node registered with its location id (``sc_location``), or a dead letter
(``unknown_sensor`` for a public node nobody registered: the operator sees which exist).

A record counts as delivered once its batch is durable (``ack``): if the ingester stops
before, the next pull delivers it again, and InfluxDB keeps one point per series and time.
A failed pull (network, HTTP error, not JSON) is logged and counted, and retried at the
next interval; nothing is acknowledged to anyone, there is no one to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import httpx
import orjson

from sensornet.district import District, load_district
from sensornet.mqtt_wire import InboundMessage
from sensornet.sensor_community import record_key

if TYPE_CHECKING:
    from ingest.inputs import BatchOutcome, InputContext

log = logging.getLogger("sensornet.ingest.sensor_community")

FORMAT = "sensor.community.api"
TOPIC = "pull/sensor.community"
SEEN_TTL_S = 3600.0  # the API answers 5 minutes; an hour of keys is plenty
SEEN_MAX = 200_000
_KM_PER_DEG = 111.32


def area_filter(district: District) -> str:
    """``lat,lon,km``: the circle around the district's bounding box."""
    min_lon, min_lat, max_lon, max_lat = district.bbox
    lat, lon = (min_lat + max_lat) / 2, (min_lon + max_lon) / 2
    half_w = (max_lon - min_lon) / 2 * _KM_PER_DEG * math.cos(math.radians(lat))
    half_h = (max_lat - min_lat) / 2 * _KM_PER_DEG
    return f"{lat:.5f},{lon:.5f},{math.ceil(math.hypot(half_w, half_h) * 10) / 10:.1f}"


def inside(record: Any, bbox: tuple[float, float, float, float]) -> bool:
    """Whether a record's location lies in ``bbox`` (min_lon, min_lat, max_lon, max_lat).
    A record without a readable location is kept: the decoder explains what is wrong."""
    location = record.get("location") if isinstance(record, dict) else None
    if not isinstance(location, dict):
        return True
    try:
        lat, lon = float(location["latitude"]), float(location["longitude"])
    except (KeyError, TypeError, ValueError):
        return True
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


class _Pull:
    """The ``connection`` of a delivered message: the record keys its ack makes seen."""

    __slots__ = ("keys",)

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys


class SensorCommunityPull:
    name = "sensor_community"

    def __init__(self, context: InputContext, district: District | None = None) -> None:
        s = context.settings
        self._deliver = context.deliver
        self._stats = context.stats
        self._district = district or load_district()
        area = s.sc_pull_area or area_filter(self._district)
        self.url = f"{s.sc_pull_url.rstrip('/')}/airrohr/v1/filter/area={area}"
        self._interval_s = s.sc_pull_interval_s
        self._timeout_s = s.sc_pull_timeout_s
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._in_flight: set[tuple[str, str]] = set()
        self._paused = False
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self.pulls = self.failures = self.delivered = self.skipped = 0

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s, headers={"user-agent": "sensornet (+sensor_community pull)"}
        )
        self._task = asyncio.create_task(self._run(), name="sensor-community-pull")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def ready(self) -> None:
        """After the first pull (answered or failed), so tests and start-up are ordered."""
        await self._first.wait()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def ack(self, batch: Sequence[InboundMessage], outcome: BatchOutcome) -> None:
        now = time.monotonic()
        for message in batch:
            pull = message.connection
            if type(pull) is not _Pull:
                continue
            for key in pull.keys:
                self._in_flight.discard(key)
                self._seen[key] = now
                self._seen.move_to_end(key)
        while self._seen and (
            len(self._seen) > SEEN_MAX or next(iter(self._seen.values())) < now - SEEN_TTL_S
        ):
            self._seen.popitem(last=False)

    async def _run(self) -> None:
        while True:
            try:
                if not self._paused:
                    await self.pull_once()
            except Exception:  # a bug must not end the pulls; logged with its traceback
                log.exception("Sensor.Community pull failed")
            finally:
                self._first.set()
            await asyncio.sleep(self._interval_s)

    async def pull_once(self) -> int:
        """One pull; returns how many records were delivered."""
        assert self._client is not None
        self.pulls += 1
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            records = orjson.loads(response.content)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            self._failed()
            log.warning("Sensor.Community pull %s failed: %r", self.url, exc)
            return 0
        if not isinstance(records, list):
            self._failed()
            log.warning("Sensor.Community pull %s: not an array of records", self.url)
            return 0
        self._stats.pulls[(self.name, "ok")] += 1
        fresh, keys = [], []
        for record in records:
            if not inside(record, self._district.bbox):
                continue
            key = record_key(record)
            if key is not None and (key in self._seen or key in self._in_flight):
                self.skipped += 1
                continue
            fresh.append(record)
            if key is not None:
                keys.append(key)
        if not fresh:
            return 0
        self._in_flight.update(keys)
        payload = orjson.dumps(fresh)
        message = InboundMessage(TOPIC, payload, None, _Pull(keys), time.time_ns(), FORMAT)
        self._deliver([message], len(payload))
        self.delivered += len(fresh)
        return len(fresh)

    def _failed(self) -> None:
        self.failures += 1
        self._stats.pulls[(self.name, "failed")] += 1


def build(context: InputContext) -> SensorCommunityPull:
    return SensorCommunityPull(context)
