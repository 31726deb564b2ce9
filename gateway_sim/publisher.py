"""Live mode: devices report at their type's interval with jitter, each with its own ``seq``
counter; sensors behind a gateway are bundled into packs (gateway format or SenML); each
device announces a retained "online" status; faults are injected per ``FaultPlan`` and
recorded in the ground truth.

``speed`` runs the city's clock faster than the wall clock (a simulated day in 24 minutes
at 60x) while device timestamps stay real, so the platform accepts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from gateway_sim.device_connection import DeviceConnection
from gateway_sim.faults import (
    SKEW_S,
    FaultPlan,
    GroundTruth,
    foreign_targets,
    inject,
    out_of_range,
)
from gateway_sim.payloads import (
    Item,
    airrohr_push,
    device_format,
    flat,
    gateway_pack,
    senml_device_pack,
    senml_pack,
)
from gateway_sim.signals import City
from gateway_sim.weather import Weather
from sensornet.catalogue import Catalogue
from sensornet.district import District, load_district
from sensornet.lineprotocol import FieldValue
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from sensornet.topics import device_topic


@dataclass(frozen=True, slots=True)
class SentReading:
    sensor_id: str
    ts_ms: int
    seq: int
    values: dict[str, FieldValue]


@dataclass(frozen=True, slots=True)
class HttpPush:
    """The ingester's HTTP input and the integration community nodes push with (the
    firmware's "own API": host, path, user and password; docs/inputs/sensor-community.md)."""

    base_url: str
    integration: str
    token: str


COMMUNITY_INTEGRATION = "community"


def community_push(settings: Settings) -> HttpPush | None:
    """Community nodes push over HTTP when the ingester runs its HTTP input and has an
    integration named ``community`` (SENSORNET_INGEST_HTTP_INTEGRATIONS); else they
    report over MQTT like the other sensors."""
    token = settings.ingest_http_integrations.get(COMMUNITY_INTEGRATION)
    if "http" not in settings.ingest_inputs or token is None:
        return None
    base = f"http://{settings.ingest_http_host}:{settings.ingest_http_port}"
    return HttpPush(base, COMMUNITY_INTEGRATION, token.get_secret_value())


@dataclass
class PublisherStats:
    sent: int = 0  # readings published (clean and faulty)
    messages: int = 0
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
        district: District | None = None,
        speed: float = 1.0,
        credentials: Mapping[str, str] | None = None,
        connections: int = 4,
        faults: FaultPlan | None = None,
        ground_truth: GroundTruth | None = None,
        gateway_flush_s: float = 2.0,
        storm_after_s: float | None = 60.0,
        tls: MqttTls | None = None,
        drain_s: float = 10.0,
        http_push: HttpPush | None = None,
        endpoints: Sequence[tuple[str, int]] = (),
        mqtt311: bool = False,
    ) -> None:
        """``endpoints``: the broker nodes the connections are spread over, round-robin
        (the scaled shape; default ``(host, port)``); ``mqtt311`` for brokers without
        MQTT 5 (RabbitMQ 3.10)."""
        self._host, self._port = host, port
        self._endpoints = list(endpoints) or [(host, port)]
        self._mqtt311 = mqtt311
        #: where community nodes push as the airrohr firmware does (None: they use MQTT)
        self._http_push = http_push
        self._http: httpx.AsyncClient | None = None
        self._pushes: set[asyncio.Task[None]] = set()
        #: at the end, how long to wait for the broker to acknowledge what is in flight
        self._drain_s = drain_s
        self._tls = tls
        self._user, self._password = username, password
        self._prefix = topic_prefix
        self._fleet = list(fleet)
        self._catalogue = catalogue
        self._first_within = first_report_within_s
        self._scale = interval_scale / speed
        self._speed = speed
        self._keep_log = keep_log
        self._seed = seed
        self._rng = random.Random(seed)
        self._credentials = dict(credentials or {})
        self._connections = max(1, connections)
        self._faults = faults or FaultPlan()
        self.truth = ground_truth or GroundTruth()
        self._gateway_flush_s = gateway_flush_s
        self._start = time.time()
        district = district or load_district()
        kickoff = None if storm_after_s is None else self._start + storm_after_s
        weather = Weather.generate(
            seed, self._start - 86_400, self._start + 30 * 86_400, _centre(district), kickoff
        )
        self.city = City(self._fleet, catalogue, district, seed=seed, weather=weather)
        self._foreign = foreign_targets({d.id: d.type for d in self._fleet}, catalogue)
        self.stats = PublisherStats()
        self._links: dict[str, DeviceConnection] = {}  # device or gateway id -> its link
        self._shared: list[DeviceConnection] = []
        self._packs: dict[str, list[list[Item]]] = {}
        self._last_ts = [0] * len(self._fleet)

    # --- connections ------------------------------------------------------------------

    def _senders(self) -> list[str]:
        """Ids that hold an MQTT connection or a share of one: direct sensors and gateways."""
        gateways = sorted({d.gateway_id for d in self._fleet if d.gateway_id})
        return [d.id for d in self._fleet if not d.gateway_id] + gateways

    async def _connect(self) -> None:
        if self._http_push is not None:
            self._http = httpx.AsyncClient(
                base_url=self._http_push.base_url,
                auth=httpx.BasicAuth(self._http_push.integration, self._http_push.token),
                timeout=60.0,
            )
        tag = uuid.uuid4().hex[:6]
        self._shared = [
            DeviceConnection(
                f"sim-{tag}-{k}",
                self._user,
                self._password,
                self._prefix,
                tls=self._tls,
                mqtt311=self._mqtt311,
            )
            for k in range(self._connections)
        ]
        own = []
        for k, sender in enumerate(self._senders()):
            password = self._credentials.get(sender)
            if password is not None:
                link = DeviceConnection(
                    f"{sender}-{tag}",
                    sender,
                    password,
                    self._prefix,
                    will_device=sender,
                    tls=self._tls,
                    mqtt311=self._mqtt311,
                )
                own.append(link)
            else:
                link = self._shared[k % len(self._shared)]
            self._links[sender] = link
        used = [link for link in self._shared if link in self._links.values()]
        self._shared = used
        nodes = self._endpoints
        await asyncio.gather(
            *(link.connect(*nodes[k % len(nodes)]) for k, link in enumerate(used + own))
        )
        for sender, link in self._links.items():
            link.status(sender, online=True)

    async def _disconnect(self) -> None:
        if self._pushes:
            await asyncio.wait(self._pushes, timeout=self._drain_s)
        if self._http is not None:
            await self._http.aclose()
        links = set(self._links.values())
        for sender, link in self._links.items():
            link.status(sender, online=False)  # a clean shutdown, not a lost device
        await asyncio.gather(*(link.drain(self._drain_s) for link in links))
        for link in links:  # still unacknowledged now: lost on the device, not the platform
            for sensor_id, seq in link.unacknowledged():
                self.truth.never_acknowledged(sensor_id, seq)
        await asyncio.gather(*(link.close() for link in links))

    # --- the run loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event, max_rounds: int | None = None) -> None:
        """Publish until ``stop``; ``max_rounds`` bounds reports per sensor (for tests)."""
        await self._connect()
        try:
            now = time.time()
            queue: list[tuple[float, int]] = [
                (now + self._rng.uniform(0, self._first_within), i) for i in range(len(self._fleet))
            ]
            heapq.heapify(queue)
            seqs = [0] * len(self._fleet)
            next_flush = now + self._gateway_flush_s
            while queue and not stop.is_set():
                due, i = queue[0]
                wait = min(due, next_flush) - time.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=min(wait, 0.5))
                    continue
                if time.time() >= next_flush:
                    self._flush_packs()
                    next_flush = time.time() + self._gateway_flush_s
                    continue
                heapq.heappop(queue)
                self._report(i, seqs[i])
                seqs[i] += 1
                if max_rounds is None or seqs[i] < max_rounds:
                    interval = self._catalogue.get(self._fleet[i].type).interval_s * self._scale
                    heapq.heappush(queue, (due + interval * self._rng.uniform(0.95, 1.05), i))
                await asyncio.sleep(0)
            self._flush_packs()
        finally:
            await self._disconnect()
            self.truth.close()

    def _city_time(self, wall_s: float) -> float:
        return self._start + (wall_s - self._start) * self._speed

    def _report(self, i: int, seq: int) -> None:
        device = self._fleet[i]
        # strictly increasing per device: two reports in one millisecond would be one
        # point in InfluxDB (same series and time), i.e. a silent overwrite
        ts_ms = max(time.time_ns() // 1_000_000, self._last_ts[i] + 1)
        self._last_ts[i] = ts_ms
        values = self.city.readings([i], [self._city_time(ts_ms / 1000)])[0]
        item = Item(device.id, ts_ms, seq, values)
        in_pack = device.gateway_id is not None
        speaks = None if in_pack else device_format(device.id, device.type)
        if speaks == "sensor_community" and self._http is not None and device.sc_chip:
            self._push_community(device, item, device.sc_chip)  # no faults over HTTP
            return
        kind = self._faults.pick(device.id, seq, in_pack=in_pack)
        if kind is None:
            self.truth.clean(device.id)
            if speaks in ("senml", "senml_cbor"):
                name = device.senml_name or device.id
                payload = senml_device_pack(item, name, cbor=speaks == "senml_cbor")
            else:
                payload = flat(item)
            self._emit(device, item, payload, device.id, copies=1)
            return
        injected = inject(
            kind,
            item,
            catalogue=self._catalogue,
            type_id=device.type,
            foreign=self._foreign.get(device.type),
            per_device_auth=device.id in self._credentials,
        )
        self.truth.fault(kind, item, injected)
        if kind == "flapping":
            link = self._links[device.id]
            link.status(device.id, online=False)
            link.status(device.id, online=True)
        if injected.payload is None:
            return
        if in_pack:
            faulty = _item_from(item, injected.payload, self._catalogue, device.type, kind)
            self._emit(device, faulty, b"", device.id, copies=injected.copies)
        else:
            self._emit(device, item, injected.payload, injected.topic_device, injected.copies)

    def _push_community(self, device: DeviceInfo, item: Item, chip: str) -> None:
        """POST as the airrohr firmware does; a refusal or a failure is a reading the
        platform never acknowledged (the firmware does not retry either)."""
        assert self._http is not None and self._http_push is not None
        self.truth.clean(device.id)
        self.stats.sent += 1
        self.stats.messages += 1
        if self._keep_log:
            self.stats.log.append(
                SentReading(item.sensor_id, item.ts_ms, item.seq, dict(item.values))
            )
        path = f"/v1/integrations/{self._http_push.integration}/sensor.community"
        body = airrohr_push(item, chip)
        headers = {"x-sensor": f"esp8266-{chip}", "content-type": "application/json"}

        async def push() -> None:
            assert self._http is not None
            try:
                answer = await self._http.post(path, content=body, headers=headers)
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            if not ok:
                self.truth.never_acknowledged(device.id)

        task = asyncio.create_task(push())
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    def _emit(
        self, device: DeviceInfo, item: Item, payload: bytes, topic_device: str, copies: int
    ) -> None:
        self.stats.sent += 1
        if self._keep_log:
            self.stats.log.append(
                SentReading(item.sensor_id, item.ts_ms, item.seq, dict(item.values))
            )
        if device.gateway_id:
            batches = self._packs.setdefault(device.gateway_id, [])
            for copy in range(copies):
                # a copy goes into a later pack: SenML refuses a repeated name and time
                while len(batches) <= copy:
                    batches.append([])
                batches[copy].append(item)
            return
        link = self._links[device.id]
        topic = device_topic(self._prefix, topic_device, "readings")
        for copy in range(copies):
            # a reading counts as acknowledged by its first copy's PUBACK
            link.publish(topic, payload, carries=() if copy else ((item.sensor_id, item.seq),))
            self.stats.messages += 1

    def _flush_packs(self) -> None:
        now_ms = time.time_ns() // 1_000_000
        for gateway, batches in self._packs.items():
            for k, items in enumerate(batches):  # batches[0] holds every first copy
                if _uses_senml(gateway):
                    payload = senml_pack(items)
                else:
                    payload = gateway_pack(gateway, items, now_ms)
                carries = [(i.sensor_id, i.seq) for i in items] if k == 0 else []
                self._links[gateway].publish(
                    device_topic(self._prefix, gateway, "pack"), payload, carries=carries
                )
                self.stats.messages += 1
        self._packs.clear()


def _centre(district: District) -> tuple[float, float]:
    return ((district.bbox[1] + district.bbox[3]) / 2, (district.bbox[0] + district.bbox[2]) / 2)


def _uses_senml(gateway_id: str) -> bool:
    """Half of the gateways speak SenML, half the gateway format: both paths stay exercised."""
    return zlib.crc32(gateway_id.encode()) % 2 == 1


def _item_from(item: Item, payload: bytes, catalogue: Catalogue, type_id: str, kind: str) -> Item:
    """The pack form of a reading-level fault (skewed clock, value out of range)."""
    if kind == "clock_skew":
        return Item(item.sensor_id, item.ts_ms + SKEW_S * 1000, item.seq, item.values)
    if kind == "out_of_range":
        return out_of_range(item, catalogue, type_id)[0]
    return item
