"""``sensornet bench northbound``: events/s the northbound pusher sustains to a local
receiver, against the same receiver fed by a bare HTTP client in the same run, and the
end-to-end latency of an alarm from its reading's arrival to the receiver.

A private InfluxDB holds N readings (an hour's backlog of a few hundred sensors). Then
``rounds`` rounds over the same data, each of two phases, each phase with a fresh receiver
(its own process: it verifies every signature and keeps every event id):

1. The ceiling: a bare httpx client that holds the same events as CloudEvents in memory
   posts them in batches of the same size, encoding and signing each body as it goes, with
   the pusher's concurrency: the sensors split into ``SENSORNET_NORTHBOUND_LANES`` lanes
   (as the pusher splits them), each posting one batch after the other on a connection
   of its own.
2. The pusher (in this process, as the bare client) delivers the N events through a fresh
   subscription: from InfluxDB, signing, recording each batch in the registry.
   ``lost``: events of the N the receiver never got (summed over the rounds).

``ratio`` is the median of the rounds' ratios (push events/s ÷ bare events/s of the same
round); ``rounds`` lists each round's figures. The phases alternate (bare, push, bare,
push, ...) so that a neighbour's burst on the shared machine lands in one round, not in
every push phase or every bare phase.

3. Latency: a private Mosquitto, the ingester, the alarm runner and the pusher run; a
   waterlogging reading is published over MQTT, alternately above and below the
   threshold; the time from the publish to the alarm event's arrival at the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from alarms.northbound.pusher import pusher_from
from alarms.northbound.receiver import Receiver
from alarms.northbound.worker import lane
from alarms.runner import run_alarms
from bench.private import bench_settings, private_influxd
from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.northbound import store
from sensornet.northbound.envelope import CONTENT_TYPE, cloud_event
from sensornet.northbound.events import Event
from sensornet.northbound.secretbox import box_from_settings
from sensornet.northbound.signing import new_secret, secret_key, sign_headers
from sensornet.northbound.spec import Filter, Kind, Spec
from sensornet.registry.store import DeviceInfo, open_registry
from sensornet.settings import Settings
from sensornet.topics import device_topic
from wiring.parts import quiet_gc, register_fleet, run_ingester
from wiring.services import Mosquitto, broker_acl, free_port

AREAS = ("jingansi", "beizhan", "caojiadu", "daninglu")
#: How often the pusher phase asks the receiver how far it got.
STATS_EVERY_S = 0.2


def _settings(root: Path, batch: int) -> Settings:
    return bench_settings(
        root,
        mqtt_fleet_password=secrets.token_urlsafe(16),  # the bench's private broker only
        northbound_batch_size=batch,
        alarm_interval_s=1.0,
    )


async def run_bench(
    events_n: int,
    sensors: int,
    batch: int,
    samples: int,
    progress: Any = None,
    rounds: int = 3,
) -> dict[str, Any]:
    quiet_gc()  # as `sensornet northbound` runs (the bare client, in this process too, gains)
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-") as tmp:
        root = Path(tmp)
        settings = _settings(root, batch)
        broker = Mosquitto(
            name="mosquitto",
            home=root / "mosquitto",
            port=settings.mqtt_port,
            users={
                settings.mqtt_ingest_user: settings.mqtt_ingest_password.get_secret_value(),
                settings.mqtt_fleet_user: settings.fleet_password(),
            },
            acl=broker_acl(
                settings.topic_prefix, settings.mqtt_ingest_user, settings.mqtt_fleet_user
            ),
        )
        influxd = private_influxd(root, settings)
        broker.start()
        influxd.start()
        try:
            async with InfluxClient(settings.influx_url, settings.influx_db, timeout_s=60) as db:
                await db.create_database()
                result = await _throughput(settings, db, events_n, sensors, batch, rounds, progress)
            result |= await _latency(settings, samples, progress)
            return result
        finally:
            broker.stop()
            influxd.stop()


def _events(sensors: int, per_sensor: int, start_ns: int) -> list[Event]:
    """The readings written, as the events the pusher makes of them, in its order: an
    hour's backlog (what a receiver back from an hour-long outage gets), each sensor at
    its own regular interval, the sensors spread across it."""
    out = []
    step = 3600 * 10**9 // per_sensor
    for i in range(per_sensor):
        for s in range(sensors):
            t = start_ns + i * step + s * (step // sensors)
            sensor_id = f"AQ-B{s:05d}"
            data = {"values": {"pm25": float(i % 500)}, "seq": i}
            out.append(
                Event(t, sensor_id, "readings", sensor_id, "air_quality", AREAS[s % 4], data)
            )
    return out


async def _subscribe(
    settings: Settings, url: str, kinds: tuple[Kind, ...], start_ns: int, secret: str
) -> str:
    """A subscription as the API stores it; its id."""
    sealed = box_from_settings(settings).seal(secret)
    async with open_registry(settings.registry_database_url) as engine:
        sub = await store.create_subscription(
            engine, Spec("bench", url, kinds, Filter()), sealed, "bench", start_ns
        )
    return sub.id


async def _move(settings: Settings, sub_id: str, url: str) -> None:
    """Point the subscription at the receiver's port (known once it runs)."""
    async with open_registry(settings.registry_database_url) as engine:
        await store.set_url(engine, sub_id, url)


@contextlib.asynccontextmanager
async def _receiver_process(secret: str) -> AsyncIterator[str]:
    """The receiver as its own process (it is another system): its URL while it runs."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
        [sys.executable, "-m", "alarms.northbound.receiver", "--port", str(port),
         "--secret", secret],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/events"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(200):
                try:
                    await client.get(f"http://127.0.0.1:{port}/stats")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _stats(client: httpx.AsyncClient, url: str) -> dict[str, int]:
    answer = await client.get(url.replace("/events", "/stats"))
    found: dict[str, int] = answer.json()
    return found


async def _unsubscribe(settings: Settings, sub_id: str) -> None:
    async with open_registry(settings.registry_database_url) as engine:
        await store.delete_subscription(engine, sub_id, "bench")


async def _throughput(
    settings: Settings,
    influx: InfluxClient,
    n: int,
    sensors: int,
    batch: int,
    rounds: int,
    progress: Any,
) -> dict[str, Any]:
    """``rounds`` rounds over the same data, each a bare phase then a push phase, each
    phase with a receiver process of its own; ``ratio`` is the median of the rounds'
    ratios (the machine's load changes from one second to the next: a neighbour busy
    during one phase only moves that round's ratio)."""
    start = time.time_ns() - 3700 * 10**9
    events = _events(sensors, max(1, n // sensors), start)
    n = len(events)
    lines = [
        encode_point(e.type, {"sensor_id": e.sensor_id, "subdistrict": e.subdistrict},
                     {"pm25": e.data["values"]["pm25"], "seq": e.data["seq"]}, e.time_ns)
        for e in events
    ]  # fmt: skip
    for i in range(0, len(lines), 5000):
        await influx.write(encode_lines(lines[i : i + 5000]))
    # the ceiling's data: the same events as CloudEvents in memory, cut as the pusher cuts
    # them: its sensors split into the same number of lanes, batches of the same size
    n_lanes = settings.northbound_lanes
    lanes: list[list[Event]] = [[] for _ in range(n_lanes)]
    for e in events:
        lanes[lane(e.key, n_lanes)].append(e)
    chunks = [
        [
            [cloud_event(e, settings.northbound_source) for e in lane[i : i + batch]]
            for i in range(0, len(lane), batch)
        ]
        for lane in lanes
    ]
    figures: list[dict[str, Any]] = []
    bad = 0
    for r in range(rounds):
        bare_s = await _bare_round(chunks, n, r)
        push_s, got = await _push_round(settings, start, n, bare_s)
        lost = n - got["ids"]  # the receiver keeps distinct ids: only these events were sent
        bad += got["bad_signatures"]
        bare_rate, push_rate = n / bare_s, (n - lost) / push_s
        figures.append({
            "bare_events_per_s": round(bare_rate),
            "push_events_per_s": round(push_rate),
            "ratio": round(push_rate / bare_rate, 3),
            "lost": lost,
        })  # fmt: skip
        if progress:
            progress(
                f"round {r + 1}: bare {n} events in {bare_s:.2f} s, "
                f"pusher {n - lost} in {push_s:.2f} s, ratio {push_rate / bare_rate:.3f}"
            )
    return {
        "bench": "northbound",
        "events": n,
        "sensors": sensors,
        "batch": batch,
        "lanes": settings.northbound_lanes,
        "bare_events_per_s": round(statistics.median(f["bare_events_per_s"] for f in figures)),
        "push_events_per_s": round(statistics.median(f["push_events_per_s"] for f in figures)),
        "ratio": round(statistics.median(f["ratio"] for f in figures), 3),
        "target_ratio": 0.5,
        "rounds": figures,
        "lost": sum(f["lost"] for f in figures),
        "bad_signatures": bad,
    }


async def _bare_round(chunks: list[list[list[dict[str, Any]]]], n: int, r: int) -> float:
    """The ceiling, to a fresh receiver process: a bare httpx client posts the events held
    in memory, each batch encoded and signed as it goes, one lane after the other on a
    connection of its own (the pusher's concurrency); seconds until the last 2xx."""
    secret = new_secret()
    key = secret_key(secret)

    async def post_lane(client: httpx.AsyncClient, url: str, i: int) -> None:
        for k, chunk in enumerate(chunks[i]):
            body = orjson.dumps(chunk)
            headers = sign_headers(key, f"msg_bare_{r}_{i}_{k}", int(time.time()), body)
            headers["content-type"] = CONTENT_TYPE
            answer = await client.post(url, content=body, headers=headers)
            answer.raise_for_status()

    async with _receiver_process(secret) as url, httpx.AsyncClient(timeout=30) as client:
        t = time.perf_counter()
        await asyncio.gather(*(post_lane(client, url, i) for i in range(len(chunks))))
        bare_s = time.perf_counter() - t
        got = await _stats(client, url)
        assert got["ids"] == n and got["bad_signatures"] == 0, got
    return bare_s


async def _push_round(
    settings: Settings, start: int, n: int, bare_s: float
) -> tuple[float, dict[str, int]]:
    """The pusher, from InfluxDB, to a fresh receiver process through a fresh subscription
    (its cursor before the first reading: every event is read, signed, sent and recorded
    again); seconds and what the receiver got."""
    secret = new_secret()
    sub_id = await _subscribe(settings, "http://127.0.0.1:1/", ("readings",), start - 1, secret)
    async with _receiver_process(secret) as url, httpx.AsyncClient(timeout=30) as client:
        await _move(settings, sub_id, url)
        stop = asyncio.Event()
        async with pusher_from(settings) as pusher:
            # no creation hold: it is a wait (OWED_MAX_AGE_S + the note settle time, ~17 s)
            # before a backdated subscription's first read, so that late points an ingester
            # wrote unnoted are stored first; there is no ingester here, and no part of the
            # push rate is in it (the work per event is the same with and without)
            pusher.config = dataclasses.replace(pusher.config, hold_new=False)
            t, started = time.perf_counter(), time.time()
            task = asyncio.create_task(pusher.run(stop))
            got = await _stats(client, url)
            deadline = t + max(120.0, bare_s * 50)
            while got["ids"] < n and time.perf_counter() <= deadline:
                await asyncio.sleep(STATS_EVERY_S)
                got = await _stats(client, url)
            # timed to the receiver's arrival of the last new event (its clock is this
            # machine's): asking it every 20 ms cost this process, the pusher's, ~10 %
            push_s = (got["last_new_at"] - started) if got["ids"] >= n else time.perf_counter() - t
            stop.set()
            await task
    await _unsubscribe(settings, sub_id)
    return push_s, got


async def _latency(settings: Settings, samples: int, progress: Any) -> dict[str, Any]:
    fleet = [
        DeviceInfo(f"WL-B{i:03d}", "waterlogging", "jingansi", 31.2235, 121.447, "active")
        for i in range(4)
    ]
    await register_fleet(settings, fleet)
    publisher = BulkPublisher(
        settings.mqtt_host, settings.mqtt_port, "bench-latency", settings.mqtt_fleet_user,
        settings.fleet_password(),
    )  # fmt: skip
    latencies: list[float] = []
    async with Receiver(None) as receiver:
        receiver.secret = new_secret()
        await _subscribe(settings, receiver.url, ("alarms",), time.time_ns(), receiver.secret)
        stop = asyncio.Event()
        ready = [asyncio.Event() for _ in range(3)]
        async with pusher_from(settings) as pusher:
            tasks = [
                asyncio.create_task(run_ingester(settings, stop, ready[0])),
                asyncio.create_task(run_alarms(settings, stop, ready[1])),
                asyncio.create_task(pusher.run(stop, ready[2])),
            ]
            try:
                async with asyncio.timeout(60):
                    await asyncio.gather(*(r.wait() for r in ready))
                for k in range(samples):
                    device = fleet[k % len(fleet)]
                    depth = 30.0 if (k // len(fleet)) % 2 == 0 else 0.0  # raise, then clear
                    seen = len(receiver.got.events)
                    topic = device_topic(settings.topic_prefix, device.id, "readings").encode()
                    payload = orjson.dumps({"ts": time.time_ns() // 1_000_000, "depth": depth})
                    t0 = time.monotonic()
                    await publisher.publish_all([(topic, payload)])
                    deadline = t0 + 30
                    while time.monotonic() < deadline:
                        arrived = [
                            e for e in receiver.got.events[seen:] if e["subject"] == device.id
                        ]
                        if arrived:
                            latencies.append(receiver.got.arrival[arrived[0]["id"]] - t0)
                            break
                        await asyncio.sleep(0.005)
            finally:
                stop.set()
                for task in tasks:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, 30)
    latencies.sort()
    if progress:
        progress(f"alarm latency: {len(latencies)} of {samples} samples")

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1)

    return {
        "alarm_samples": samples,
        "alarm_arrived": len(latencies),
        "alarm_latency_p50_ms": pct(0.50),
        "alarm_latency_p99_ms": pct(0.99),
        "alarm_latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "alarm_interval_s": settings.alarm_interval_s,
        "northbound_poll_s": settings.northbound_poll_s,
    }
