"""The pusher's Prometheus metrics: what an operator's alert rules read (a paused
subscription is ``sensornet_northbound_paused == 1``; docs/northbound.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge

from sensornet.probe_server import ReadinessChecks, serve_probes


class PusherMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["subscription"]
        self.delivered = Counter(
            "sensornet_northbound_delivered_events",
            "Events a receiver acknowledged (2xx)",
            labels,
            registry=self.registry,
        )
        self.failed = Counter(
            "sensornet_northbound_failed_requests",
            "Requests a receiver failed (non-2xx, timeout, refused)",
            labels,
            registry=self.registry,
        )
        self.paused = Gauge(
            "sensornet_northbound_paused",
            "1 while a subscription is paused after failing too long",
            labels,
            registry=self.registry,
        )
        self.lag = Gauge(
            "sensornet_northbound_lag_seconds",
            "Age of the oldest event not yet delivered (0 when caught up)",
            labels,
            registry=self.registry,
        )

    def forget(self, subscription_id: str) -> None:
        for metric in (self.delivered, self.failed, self.paused, self.lag):
            with contextlib.suppress(KeyError):
                metric.remove(subscription_id)


@contextlib.contextmanager
def serve_metrics(
    metrics: PusherMetrics, port: int, host: str, ready: ReadinessChecks
) -> Iterator[None]:
    """``/metrics``, ``/livez`` and ``/readyz`` (the pusher's loop runs, and its last look
    at the registry worked) on ``port``; 0: off."""
    if not port:
        yield
        return
    with serve_probes(port, host, metrics.registry, ready):
        yield
