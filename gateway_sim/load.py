"""Load mode: as many readings as the broker takes, at a target rate, for a duration,
from many MQTT connections spread over worker processes.

Each worker owns a slice of the fleet and its connections; every connection keeps at
most ``max_in_flight`` unacknowledged QoS 1 messages (gmqtt's 16-bit packet ids would
run out otherwise, and the broker's inflight window would stall). Messages are single
readings (flat JSON with ``seq``) on each sensor's own topic: the case the ingester's
single-reading benchmark needs. Shared counters feed the parent's progress bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing as mp
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from queue import Empty
from typing import Any

import orjson

from gateway_sim.device_connection import DeviceConnection, SimulatorError
from gateway_sim.faults import FaultPlan, GroundTruth, foreign_targets, inject
from gateway_sim.payloads import Item
from gateway_sim.signals import City
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceInfo
from sensornet.topics import device_topic

CHUNK = 2048  # readings generated per vectorised step


@dataclass(frozen=True)
class LoadPlan:
    host: str
    port: int
    username: str
    password: str
    prefix: str
    rate: float  # readings/s over all workers; 0 = as fast as acknowledged
    duration_s: float
    connections: int  # shared-identity connections over all workers
    max_in_flight: int = 100
    seed: int = 151
    credentials: dict[str, str] = field(default_factory=dict)
    faults: FaultPlan = field(default_factory=FaultPlan)
    truth_path: Path | None = None
    connect_concurrency: int = 200
    tls: MqttTls | None = None  # plain data: each worker process makes its own context


@dataclass
class WorkerResult:
    sent: int = 0
    acked: int = 0
    connected: int = 0
    elapsed_s: float = 0.0
    truth: GroundTruth = field(default_factory=GroundTruth)


def raise_file_limit() -> int:
    """Raise the soft open-file limit to the hard one: 10,000 connections need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _connect_all(links: Sequence[DeviceConnection], plan: LoadPlan) -> None:
    gate = asyncio.Semaphore(plan.connect_concurrency)

    async def one(link: DeviceConnection) -> None:
        async with gate:
            await link.connect(plan.host, plan.port)

    await asyncio.gather(*(one(link) for link in links))


async def _worker_main(
    plan: LoadPlan,
    fleet: list[DeviceInfo],
    mine: list[int],
    connections: int,
    rate: float,
    counters: tuple[Synchronized[int], Synchronized[int], Synchronized[int]],
    worker: int,
) -> WorkerResult:
    catalogue = load_catalogue()
    city = City(fleet, catalogue, load_district(), seed=plan.seed)
    foreign = foreign_targets({d.id: d.type for d in fleet}, catalogue)
    truth_path = None
    if plan.truth_path is not None:
        truth_path = plan.truth_path.with_name(f"{plan.truth_path.name}.part{worker}")
    truth = GroundTruth(truth_path)
    tag = uuid.uuid4().hex[:6]
    shared = [
        DeviceConnection(
            f"load-{tag}-{worker}-{k}",
            plan.username,
            plan.password,
            plan.prefix,
            max_in_flight=plan.max_in_flight,
            tls=plan.tls,
        )
        for k in range(max(1, connections))
    ]
    link_of: list[DeviceConnection] = []
    own: list[DeviceConnection] = []
    for n, i in enumerate(mine):
        sensor = fleet[i].id
        password = plan.credentials.get(sensor)
        if password is not None:
            link = DeviceConnection(
                f"{sensor}-{tag}",
                sensor,
                password,
                plan.prefix,
                will_device=sensor,
                max_in_flight=plan.max_in_flight,
                tls=plan.tls,
            )
            own.append(link)
        else:
            link = shared[n % len(shared)]
        link_of.append(link)
    used = list({id(x): x for x in link_of}.values())
    sent_v, acked_v, conn_v = counters
    await _connect_all(used, plan)
    with conn_v.get_lock():
        conn_v.value += len(used)
    for n, i in enumerate(mine):
        link_of[n].status(fleet[i].id, online=True)
    await asyncio.gather(*(x.drain(60) for x in used))  # so acked counts readings only
    result = WorkerResult(connected=len(used), truth=truth)
    seqs = [0] * len(mine)
    last_ts = [0] * len(mine)
    topics = [device_topic(plan.prefix, fleet[i].id, "readings") for i in mine]
    start = time.monotonic()
    cursor = 0
    baseline_acked = sum(x.acked for x in used)
    while (elapsed := time.monotonic() - start) < plan.duration_s:
        if rate > 0:
            due = int(elapsed * rate) - result.sent
            if due <= 0:
                await asyncio.sleep(min(0.01, CHUNK / rate))
                continue
            n_now = min(due, CHUNK)
        else:
            n_now = CHUNK
        rows = [(cursor + k) % len(mine) for k in range(n_now)]
        cursor = (cursor + n_now) % len(mine)
        now_ms = time.time_ns() // 1_000_000
        values = city.readings([mine[r] for r in rows], [now_ms / 1000] * n_now)
        batches: dict[int, tuple[DeviceConnection, list[Pending]]] = {}
        flush = functools.partial(_flush, batches)
        for r, vals in zip(rows, values, strict=True):
            ts = max(now_ms, last_ts[r] + 1)  # unique per sensor, so no overwrite
            last_ts[r] = ts
            item = Item(fleet[mine[r]].id, ts, seqs[r], vals)
            seqs[r] += 1
            link = link_of[r]
            pending = batches.setdefault(id(link), (link, []))[1]
            if link.storage.in_flight + len(pending) >= link.storage.limit:
                flush()
                await link.room()
                pending = batches.setdefault(id(link), (link, []))[1]
            kind = plan.faults.pick(item.sensor_id, item.seq)
            if kind is None:
                truth.clean(item.sensor_id)
                payload = orjson.dumps({"ts": ts, "seq": item.seq, **vals})
                pending.append((topics[r], payload, (item.sensor_id, item.seq)))
            else:
                device = fleet[mine[r]]
                injected = inject(
                    kind,
                    item,
                    catalogue=catalogue,
                    type_id=device.type,
                    foreign=foreign.get(device.type),
                    per_device_auth=device.id in plan.credentials,
                )
                truth.fault(kind, item, injected)
                if kind == "flapping":
                    flush()
                    link.status(item.sensor_id, online=False)
                    link.status(item.sensor_id, online=True)
                    pending = batches.setdefault(id(link), (link, []))[1]
                if injected.payload is not None:
                    topic = device_topic(plan.prefix, injected.topic_device, "readings")
                    key = (item.sensor_id, item.seq)  # acknowledged by its first copy
                    pending.append((topic, injected.payload, key))
                    pending.extend([(topic, injected.payload, None)] * (injected.copies - 1))
            result.sent += 1
        flush()
        with sent_v.get_lock():
            sent_v.value += n_now
        acked = sum(x.acked for x in used) - baseline_acked
        with acked_v.get_lock():
            acked_v.value += acked - result.acked
        result.acked = acked
        await asyncio.sleep(0)
    await asyncio.gather(*(x.drain(60) for x in used))
    result.elapsed_s = time.monotonic() - start
    acked = sum(x.acked for x in used) - baseline_acked
    with acked_v.get_lock():
        acked_v.value += acked - result.acked
    result.acked = acked
    for n, i in enumerate(mine):
        link_of[n].status(fleet[i].id, online=False)
    await asyncio.gather(*(x.drain(10) for x in used))
    for link in used:  # still unacknowledged: lost on the device, not the platform
        for sensor_id, seq in link.unacknowledged():
            truth.never_acknowledged(sensor_id, seq)
    await asyncio.gather(*(x.close() for x in used))
    truth.close()
    truth.path = None
    return result


#: a message waiting for its batch: topic, payload, the reading it carries (if any)
Pending = tuple[str, bytes, tuple[str, int] | None]


def _flush(batches: dict[int, tuple[DeviceConnection, list[Pending]]]) -> None:
    for link, batch in batches.values():
        if batch:
            link.publish_batch(
                [(topic, payload) for topic, payload, _ in batch],
                carries=[(key,) if key else () for _, _, key in batch],
            )
    batches.clear()


def _worker(args: tuple[Any, ...], results: Any) -> None:
    raise_file_limit()
    worker = args[-1]
    try:
        results.put((worker, asyncio.run(_worker_main(*args))))
    except BaseException as exc:
        results.put((worker, exc))
        raise


def run_load(
    plan: LoadPlan,
    fleet: list[DeviceInfo],
    processes: int,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> tuple[list[WorkerResult], float]:
    """Run the load over ``processes`` workers; returns their results and the wall time.
    ``on_progress(sent, acked, connected)`` is called a few times a second."""
    raise_file_limit()
    processes = max(1, min(processes, len(fleet)))
    ctx = mp.get_context("spawn")
    counters = (ctx.Value("q", 0), ctx.Value("q", 0), ctx.Value("q", 0))
    queue = ctx.Queue()
    slices = [list(range(k, len(fleet), processes)) for k in range(processes)]
    conns = [
        plan.connections // processes + (1 if k < plan.connections % processes else 0)
        for k in range(processes)
    ]
    rate = plan.rate / processes if plan.rate > 0 else 0.0
    start = time.monotonic()
    workers = [
        ctx.Process(
            target=_worker,
            args=((plan, fleet, slices[k], conns[k], rate, counters, k), queue),
            daemon=True,
        )
        for k in range(processes)
    ]
    for w in workers:
        w.start()
    got: dict[int, WorkerResult] = {}
    try:
        while len(got) < processes:
            try:
                worker, result = queue.get(timeout=0.25)
            except Empty:
                if on_progress is not None:
                    on_progress(counters[0].value, counters[1].value, counters[2].value)
                if not any(w.is_alive() for w in workers) and queue.empty():
                    raise SimulatorError("a load worker died without a result") from None
                continue
            if isinstance(result, BaseException):
                raise SimulatorError(f"load worker {worker} failed: {result!r}") from result
            got[worker] = result
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
    if on_progress is not None:
        on_progress(counters[0].value, counters[1].value, counters[2].value)
    results = [got[k] for k in range(processes)]
    if plan.truth_path is not None:
        with plan.truth_path.open("wb") as out:
            for k in range(processes):
                part = plan.truth_path.with_name(f"{plan.truth_path.name}.part{k}")
                if part.exists():
                    out.write(part.read_bytes())
                    part.unlink()
    return results, time.monotonic() - start


def merge_truth(results: Sequence[WorkerResult]) -> GroundTruth:
    merged = GroundTruth()
    for r in results:
        for name in (
            "sent",
            "expected_stored",
            "expected_rejects",
            "denied",
            "not_sent",
            "faults",
            "unacked",
        ):
            counter: Counter[Any] = getattr(merged, name)
            counter.update(getattr(r.truth, name))
        merged.unacked_keys |= r.truth.unacked_keys
    return merged
