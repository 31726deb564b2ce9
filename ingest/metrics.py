"""The ingester's figures: one stats object, exposed two ways — Prometheus text on
``/metrics`` and points in InfluxDB (``platform_ingest``, ``platform_rejects``) so the
operations view can chart platform health next to the data."""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sensornet.lineprotocol import encode_point
from sensornet.probe_server import serve_probes
from sensornet.unknown_keys import OTHER

_P = "sensornet_ingest_"
UNKNOWN_KEY_LABELS = 200  # distinct keys a Prometheus label takes from devices
#: upper bounds (s) of the latency histograms; the last is +Inf
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)


def _histogram(name: str, doc: str, counts: list[int], total: float) -> HistogramMetricFamily:
    cumulative, running = [], 0
    for bound, count in zip(LATENCY_BUCKETS, counts, strict=True):
        running += count
        cumulative.append(("+Inf" if math.isinf(bound) else repr(bound), running))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=total)


@dataclass
class IngestStats:
    received_messages: int = 0
    received_readings: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    spooled: int = 0
    replayed: int = 0
    write_errors: Counter[str] = field(default_factory=Counter)
    # what kept a batch from being made durable, or the spool from being replayed, by
    # cause: registry, spool_full, spool_write, spool_corrupt, internal
    failures: Counter[str] = field(default_factory=Counter)
    # dead-letter and status lines InfluxDB refused, by measurement: logged, not stored
    dropped_lines: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batch_latency_s: float = 0.0
    lag_s: float = 0.0
    spool_bytes: int = 0
    spool_readings: int = 0
    spool_near_full: bool = False
    influx_refusing: bool = False
    spool_failing: bool = False  # the spool refuses writes (full, ENOSPC, EIO): nothing acked
    registry_stale: bool = False  # the registry is unreachable: the cached sensors are used
    first_message_at: float | None = None
    last_batch_at: float | None = None  # epoch of the last batch made durable and acked
    pending_bytes: int = 0  # received payload not yet taken into a batch
    # readings stored without a key their type does not know, by key (at most
    # UNKNOWN_KEY_LABELS keys, the rest "_other"; per device: the unknown_keys measurement)
    unknown_keys: Counter[str] = field(default_factory=Counter)
    http_requests: int = 0  # HTTP input: requests received
    http_refused: Counter[str] = field(default_factory=Counter)  # answered 4xx/5xx, by reason
    http_registry_lookups: int = 0  # HTTP input: devices looked up in the registry at login
    # pull inputs (sensor_community): pulls by (input, outcome: ok, failed)
    pulls: Counter[tuple[str, str]] = field(default_factory=Counter)
    pending_bytes_peak: int = 0
    redelivered: int = 0  # AMQP input: deliveries the broker had given out before
    reconnects: int = 0  # AMQP input: connections re-established (each returns its window)
    # AMQP input: deliveries not yet acknowledged when a connection was lost (what the
    # queue gives out again because of it; acks the dying node had not yet applied add to it)
    released: int = 0

    # histograms (Prometheus): batch receive-to-ack and arrival-to-durable, per batch
    batch_latency_hist: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    batch_latency_sum: float = 0.0
    lag_hist: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    lag_sum: float = 0.0

    def observe_batch(self, latency_s: float, lag_s: float) -> None:
        """One batch made durable and acked: into both histograms (cumulative buckets are
        made at scrape time; here each batch counts once, in its first bucket)."""
        self.batch_latency_sum += latency_s
        self.batch_latency_hist[bisect.bisect_left(LATENCY_BUCKETS, latency_s)] += 1
        self.lag_sum += lag_s
        self.lag_hist[bisect.bisect_left(LATENCY_BUCKETS, lag_s)] += 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def count_unknown_keys(self, counts: Mapping[tuple[str, str], int]) -> None:
        known = self.unknown_keys
        for (_, key), count in counts.items():
            if key not in known and len(known) >= UNKNOWN_KEY_LABELS:
                key = OTHER
            known[key] += count


class StatsCollector(Collector):
    """Reads ``IngestStats`` at scrape time: no second set of counters to keep in step."""

    def __init__(self, stats: IngestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, value, doc in (
            ("received_messages", s.received_messages, "MQTT messages received"),
            ("received_readings", s.received_readings, "Readings received (stored + rejected)"),
            ("stored", s.stored, "Readings stored in InfluxDB or the spool"),
            ("spooled", s.spooled, "Readings written to the disk spool"),
            ("replayed", s.replayed, "Spooled readings replayed into InfluxDB"),
            ("batches", s.batches, "Batches written"),
        ):
            yield CounterMetricFamily(_P + name, doc, value=value)
        rejected = CounterMetricFamily(_P + "rejected", "Readings rejected", labels=["reason"])
        for reason, count in sorted(s.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        errors = CounterMetricFamily(_P + "influx_errors", "InfluxDB write errors", labels=["kind"])
        for kind, count in sorted(s.write_errors.items()):
            errors.add_metric([kind], count)
        yield errors
        failures = CounterMetricFamily(
            _P + "failures", "What kept batches from being durable or replayed", labels=["cause"]
        )
        for cause, count in sorted(s.failures.items()):
            failures.add_metric([cause], count)
        yield failures
        dropped = CounterMetricFamily(
            _P + "dropped_lines",
            "Dead-letter and status lines InfluxDB refused: logged, not stored",
            labels=["measurement"],
        )
        for measurement, count in sorted(s.dropped_lines.items()):
            dropped.add_metric([measurement], count)
        yield dropped
        unknown = CounterMetricFamily(
            _P + "unknown_keys",
            "Readings stored without a key their type does not know, by key",
            labels=["key"],
        )
        for key, count in sorted(s.unknown_keys.items()):
            unknown.add_metric([key], count)
        yield unknown
        yield CounterMetricFamily(
            _P + "http_requests", "HTTP input: requests received", value=s.http_requests
        )
        http_refused = CounterMetricFamily(
            _P + "http_refused",
            "HTTP input: requests answered with an error, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(s.http_refused.items()):
            http_refused.add_metric([reason], count)
        yield http_refused
        yield CounterMetricFamily(
            _P + "http_registry_lookups",
            "HTTP input: logins of devices it did not know (or that failed) checked against "
            "the registry itself, rate-limited per device",
            value=s.http_registry_lookups,
        )
        pulls = CounterMetricFamily(
            _P + "pulls", "Pull inputs: pulls by input and outcome (ok, failed)",
            labels=["input", "outcome"],
        )  # fmt: skip
        for (name, outcome), count in sorted(s.pulls.items()):
            pulls.add_metric([name, outcome], count)
        yield pulls
        gauges: tuple[tuple[str, float, str], ...] = (
            ("batch_latency_seconds", s.batch_latency_s, "Last batch: receive to ack"),
            ("lag_seconds", s.lag_s, "Last batch: oldest message arrival to durable"),
            ("spool_bytes", s.spool_bytes, "Bytes waiting in the spool"),
            ("spool_readings", s.spool_readings, "Readings waiting in the spool"),
            ("spool_near_full", int(s.spool_near_full), "1 when the spool is over 80% full"),
            ("influx_refusing", int(s.influx_refusing), "1 while InfluxDB refuses (401/403/404)"),
            ("spool_failing", int(s.spool_failing), "1 while the spool refuses writes"),
            ("registry_stale", int(s.registry_stale), "1 while the registry is unreachable"),
            ("first_message_timestamp_seconds", s.first_message_at or 0.0, "Epoch of 1st message"),
            ("last_batch_timestamp_seconds", s.last_batch_at or 0.0, "Epoch of the last ack"),
            ("pending_bytes", s.pending_bytes, "Payload received, not yet in a batch"),
            ("pending_bytes_peak", s.pending_bytes_peak, "Most payload ever held pending"),
        )
        for name, level, doc in gauges:
            yield GaugeMetricFamily(_P + name, doc, value=level)
        yield _histogram(_P + "batch_seconds", "Batches: receive to ack",
                         s.batch_latency_hist, s.batch_latency_sum)  # fmt: skip
        yield _histogram(_P + "lag_histogram_seconds", "Batches: oldest arrival to durable",
                         s.lag_hist, s.lag_sum)  # fmt: skip


@contextlib.contextmanager
def serve_metrics(
    stats: IngestStats,
    port: int,
    host: str = "127.0.0.1",
    receiving: Callable[[], bool] = lambda: True,
) -> Iterator[None]:
    """Prometheus ``/metrics`` and the probes ``/livez`` and ``/readyz`` on ``port``
    (0: off) for as long as the ingester runs. Call it inside the running loop.

    Ready means: the inputs receive, and a batch can be made durable (InfluxDB does not
    refuse the ingester's writes, the spool takes batches)."""
    if not port:
        yield
        return
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(stats))

    def ready() -> dict[str, bool]:
        return {
            "receiving": receiving(),
            "influxdb_accepts_writes": not stats.influx_refusing,
            "spool_accepts_batches": not stats.spool_failing,
        }

    with serve_probes(port, host, registry, ready):
        yield


def platform_lines(stats: IngestStats, ingester: str, now_ns: int | None = None) -> list[str]:
    """The stats as InfluxDB points (the contract the dashboards and API read)."""
    ts = now_ns or time.time_ns()
    tags = {"ingester": ingester}
    lines = [
        encode_point(
            "platform_ingest",
            tags,
            {
                "received_messages": stats.received_messages,
                "received_readings": stats.received_readings,
                "stored": stats.stored,
                "rejected": stats.rejected_total,
                "spooled": stats.spooled,
                "replayed": stats.replayed,
                "write_errors": sum(stats.write_errors.values()),
                "failures": sum(stats.failures.values()),
                "dropped_lines": sum(stats.dropped_lines.values()),
                "spool_bytes": stats.spool_bytes,
                "spool_readings": stats.spool_readings,
                "batch_latency_ms": stats.batch_latency_s * 1000,
                "lag_ms": stats.lag_s * 1000,
                "pending_bytes": stats.pending_bytes,
                "redelivered": stats.redelivered,
                "reconnects": stats.reconnects,
                "released": stats.released,
                "unknown_keys": sum(stats.unknown_keys.values()),
            },
            ts,
        )
    ]
    lines += [
        encode_point("platform_rejects", {**tags, "reason": reason}, {"count": count}, ts)
        for reason, count in sorted(stats.rejected.items())
    ]
    lines += [
        encode_point("platform_unknown_keys", {**tags, "key": key}, {"count": count}, ts)
        for key, count in sorted(stats.unknown_keys.items())
    ]
    return lines
