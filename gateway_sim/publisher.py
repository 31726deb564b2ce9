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
from collections import Counter
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
    content_type,
    device_format,
    flat,
    gateway_pack,
    pushes_over_http,
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


def native_payload(device: DeviceInfo, item: Item, speaks: str | None) -> bytes:
    """A clean reading as its device sends it: SenML (JSON or CBOR) under its registered
    name, else the flat object (what ``content_type`` names for anything but SenML)."""
    if speaks in ("senml", "senml_cbor"):
        name = device.senml_name or device.id
        return senml_device_pack(item, name, cbor=speaks == "senml_cbor")
    return flat(item)


@dataclass(frozen=True, slots=True)
class SentReading:
    sensor_id: str
    ts_ms: int
    seq: int
    values: dict[str, FieldValue]


@dataclass(frozen=True, slots=True)
class HttpPush:
    """The ingester's HTTP input, and who pushes to it: community nodes through the
    integration (the firmware's "own API": host, path, user and password;
    docs/inputs/sensor-community.md) when ``integration`` is set, and the ``device_share``
    of the other devices and gateways with their own credentials (docs/simulator.md)."""

    base_url: str
    integration: str | None = None
    token: str = ""
    device_share: float = 0.0


COMMUNITY_INTEGRATION = "community"
HTTP_RETRY_FIRST_S = 0.2  # a device's first retry of an unanswered request
HTTP_RETRY_MAX_S = 5.0  # the longest wait between retries (doubling, with jitter)


def http_push(settings: Settings, device_share: float = 0.0) -> HttpPush | None:
    """Where simulated devices push when the ingester runs its HTTP input: community nodes
    when it has an integration named ``community`` (SENSORNET_INGEST_HTTP_INTEGRATIONS),
    and ``device_share`` of the fleet on their own credentials; None when nobody does
    (everything then reports over MQTT)."""
    if "http" not in settings.ingest_inputs:
        return None
    token = settings.ingest_http_integrations.get(COMMUNITY_INTEGRATION)
    if token is None and device_share <= 0:
        return None
    base = f"http://{settings.ingest_http_host}:{settings.ingest_http_port}"
    if token is None:
        return HttpPush(base, device_share=device_share)
    return HttpPush(base, COMMUNITY_INTEGRATION, token.get_secret_value(), device_share)


def community_push(settings: Settings) -> HttpPush | None:
    """Community nodes push over HTTP when the ingester runs its HTTP input and has an
    integration named ``community``; else they report over MQTT like the other sensors."""
    push = http_push(settings)
    return push if push is not None and push.integration is not None else None


def http_senders(
    fleet: Sequence[DeviceInfo], push: HttpPush | None, community_over_http: bool = False
) -> list[str]:
    """The direct sensors and gateways that push over HTTP with their own credentials
    (their ids pick them, ``gateway_sim.payloads.pushes_over_http``); community nodes
    that use the community integration are not among them."""
    if push is None or push.device_share <= 0:
        return []
    gateways = sorted({d.gateway_id for d in fleet if d.gateway_id})
    direct = [
        d.id
        for d in fleet
        if not d.gateway_id and not (community_over_http and _pushes_community(d))
    ]
    return [s for s in direct + gateways if pushes_over_http(s, push.device_share)]


@dataclass
class PublisherStats:
    sent: int = 0  # readings published (clean and faulty)
    messages: int = 0
    #: HTTP answers by status (0: no answer: connection refused, timeout), retries included
    http_answers: Counter[int] = field(default_factory=Counter)
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
        #: where community nodes push as the airrohr firmware does, and the share of
        #: devices that push over HTTP (None: everything uses MQTT)
        self._http_push = http_push
        self._http: httpx.AsyncClient | None = None
        self._community_http = http_push is not None and http_push.integration is not None
        chosen = http_senders(fleet, http_push, self._community_http)
        #: devices and gateways that push over HTTP: those chosen that have credentials
        self.over_http = frozenset(s for s in chosen if s in (credentials or {}))
        self._http_keys = 0
        self._tag = uuid.uuid4().hex[:6]  # new per connect; keys differ from run to run
        self._jitter = random.Random()  # not self._rng: retries must not move the schedule
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
        self.truth.over_http |= {
            d.id
            for d in self._fleet
            if d.id in self.over_http
            or d.gateway_id in self.over_http
            or (self._community_http and _pushes_community(d))
        }

    # --- connections ------------------------------------------------------------------

    def _senders(self) -> list[str]:
        """Ids that hold an MQTT connection or a share of one: direct sensors and gateways
        (those that push over HTTP have none)."""
        gateways = sorted({d.gateway_id for d in self._fleet if d.gateway_id})
        ids = [d.id for d in self._fleet if not d.gateway_id] + gateways
        return [s for s in ids if s not in self.over_http]

    async def _connect(self) -> None:
        if self._http_push is not None:
            self._http = httpx.AsyncClient(base_url=self._http_push.base_url, timeout=60.0)
        tag = self._tag = uuid.uuid4().hex[:6]
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
        for task in list(self._pushes):  # still unanswered: lost on the device
            task.cancel()
        if self._pushes:
            await asyncio.wait(self._pushes)
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
        if self._community_http and device.sc_chip and _pushes_community(device):
            self._push_community(device, item, device.sc_chip)  # no faults over HTTP
            return
        if device.id in self.over_http:
            self._report_http(device, item, speaks or "flat")
            return
        kind = self._faults.pick(device.id, seq, in_pack=in_pack)
        if kind is None:
            self.truth.clean(device.id)
            payload = native_payload(device, item, speaks)
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
        assert self._http_push is not None and self._http_push.integration is not None
        self.truth.clean(device.id)
        self.stats.sent += 1
        if self._keep_log:
            self.stats.log.append(
                SentReading(item.sensor_id, item.ts_ms, item.seq, dict(item.values))
            )
        integration = self._http_push.integration
        self._post(
            f"/v1/integrations/{integration}/sensor.community",
            airrohr_push(item, chip),
            {"x-sensor": f"esp8266-{chip}", "content-type": "application/json"},
            httpx.BasicAuth(integration, self._http_push.token),
            carries=[(device.id, None)],
            retry=False,
        )

    def _report_http(self, device: DeviceInfo, item: Item, speaks: str) -> None:
        """A device that pushes over HTTP: its native payload to its own route with its
        own credentials; faults of the reading kind only (as inside a gateway's pack: a
        broken request is refused at the door, which MQTT has no counterpart for)."""
        kind = self._faults.pick(device.id, item.seq, in_pack=True)
        if kind is None:
            self.truth.clean(device.id)
            payload = native_payload(device, item, speaks)
            copies = 1
        else:
            injected = inject(kind, item, catalogue=self._catalogue, type_id=device.type,
                              foreign=None, per_device_auth=True)  # fmt: skip
            self.truth.fault(kind, item, injected)
            if injected.payload is None:
                return
            payload, speaks, copies = injected.payload, "flat", injected.copies
        self.stats.sent += 1
        if self._keep_log:
            self.stats.log.append(
                SentReading(item.sensor_id, item.ts_ms, item.seq, dict(item.values))
            )
        for copy in range(copies):  # a duplicate is a second request, not a retry
            self._post(
                f"/v1/devices/{device.id}/readings",
                payload,
                {"content-type": content_type(speaks)},
                self._device_auth(device.id),
                carries=[] if copy else [(item.sensor_id, item.seq)],
            )

    def _device_auth(self, sender: str) -> httpx.BasicAuth:
        return httpx.BasicAuth(sender, self._credentials[sender])

    def _post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        auth: httpx.BasicAuth,
        *,
        carries: Sequence[tuple[str, int | None]],
        retry: bool = True,
    ) -> None:
        """POST in the background. With ``retry`` (a device built to lose nothing), the
        same request is sent again, with the same ``Idempotency-Key``, until it is
        answered: no answer, 429 and 5xx are retried with doubling backoff and jitter.
        The readings it ``carries`` count as lost on the device unless the answer is 2xx
        or 422 (some refused: dead letters, the rest durable); any other 4xx is the
        device's own fault (credentials, size), and the platform took nothing."""
        assert self._http is not None
        self.stats.messages += 1
        self._http_keys += 1
        key = f"sim-{self._tag}-{self._http_keys}"
        headers = {**headers, "idempotency-key": key} if retry else headers

        async def push() -> None:
            assert self._http is not None
            status = 0
            delay = HTTP_RETRY_FIRST_S
            try:
                while True:
                    retry_after = 0.0
                    try:
                        answer = await self._http.post(
                            path, content=body, headers=headers, auth=auth
                        )
                        status = answer.status_code
                        retry_after = _seconds(answer.headers.get("retry-after"))
                    except httpx.HTTPError:
                        status = 0
                    self.stats.http_answers[status] += 1
                    if not retry or (status not in (0, 429) and status < 500):
                        break
                    pause = max(delay * self._jitter.uniform(0.8, 1.2), retry_after)
                    await asyncio.sleep(min(pause, HTTP_RETRY_MAX_S))
                    delay = min(delay * 2, HTTP_RETRY_MAX_S)
            finally:  # cancelled at the end of the run: never answered
                if not (200 <= status < 300 or status == 422):
                    for sensor_id, seq in carries:
                        self.truth.never_acknowledged(sensor_id, seq)

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
                    payload, kind = senml_pack(items), "senml"
                else:
                    payload, kind = gateway_pack(gateway, items, now_ms), "flat"
                carries = [(i.sensor_id, i.seq) for i in items] if k == 0 else []
                if gateway in self.over_http:
                    self._post(
                        f"/v1/devices/{gateway}/pack",
                        payload,
                        {"content-type": content_type(kind)},
                        self._device_auth(gateway),
                        carries=carries,
                    )
                    continue
                self._links[gateway].publish(
                    device_topic(self._prefix, gateway, "pack"), payload, carries=carries
                )
                self.stats.messages += 1
        self._packs.clear()


def _centre(district: District) -> tuple[float, float]:
    return ((district.bbox[1] + district.bbox[3]) / 2, (district.bbox[0] + district.bbox[2]) / 2)


def _pushes_community(device: DeviceInfo) -> bool:
    """A community node that posts to the community integration (when there is one)."""
    return (
        not device.gateway_id
        and device_format(device.id, device.type) == "sensor_community"
        and bool(device.sc_chip)
    )


def _seconds(retry_after: str | None) -> float:
    """``Retry-After`` in seconds (the input sends delta-seconds); 0 when absent or odd."""
    try:
        return max(0.0, float(retry_after)) if retry_after else 0.0
    except ValueError:
        return 0.0


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
