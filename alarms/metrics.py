"""The alarm runner's Prometheus ``/metrics``: how long its rounds take (a histogram),
what it told Alertmanager, whether the broker and InfluxDB answer it, and the liveness it
computed: sensors per subdistrict and state, and one series per offline sensor, so the
shipped alert rules (wiring/prometheus_alerts.yml) can tell of a subdistrict going silent
or a sensor offline past its cadence. Read at scrape time from the runner's own state."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alarms.notify import NotifyStats
from sensornet.liveness import Liveness
from sensornet.probe_server import serve_probes
from sensornet.registry.store import DeviceInfo

_P = "sensornet_alarm_"
ROUND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class RunnerHealth:
    devices: list[DeviceInfo] = field(default_factory=list)
    states: dict[str, Liveness] = field(default_factory=dict)
    severities: Counter[str] = field(default_factory=Counter)
    #: dependency -> (address, reachable)
    dependencies: dict[str, tuple[str, bool]] = field(default_factory=dict)
    notify: NotifyStats | None = None
    maintenance_active: int = 0
    rounds_failed: int = 0
    #: alarm changes decided but not yet stored (InfluxDB, then SQL): ``alarms.outbox``
    outbox: int = 0


class RunnerCollector(Collector):
    def __init__(self, health: RunnerHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        h = self.health
        active = GaugeMetricFamily(_P + "active", "Active alarms", labels=["severity"])
        for severity in ("info", "warning", "major", "critical"):
            active.add_metric([severity], h.severities.get(severity, 0))
        yield active
        yield CounterMetricFamily(_P + "rounds_failed", "Rounds skipped", value=h.rounds_failed)
        yield GaugeMetricFamily(
            _P + "changes_unstored",
            "Alarm changes decided but not yet stored (retried every round)",
            value=h.outbox,
        )
        yield GaugeMetricFamily(
            _P + "maintenance_windows_active",
            "Maintenance windows running now",
            value=h.maintenance_active,
        )
        deps = GaugeMetricFamily(
            "sensornet_dependency_up",
            "1 if the alarm runner reached it on its last round",
            labels=["dependency", "address"],
        )
        for name, (address, up) in sorted(h.dependencies.items()):
            deps.add_metric([name, address], int(up))
        yield deps
        if h.notify is not None:
            n = h.notify
            yield GaugeMetricFamily(
                _P + "alertmanager_up", "1 if Alertmanager took the last round", value=int(n.up)
            )
            yield CounterMetricFamily(
                _P + "alert_posts", "Alert batches Alertmanager took", value=n.posts_ok
            )
            yield CounterMetricFamily(
                _P + "notify_failures", "Rounds Alertmanager did not take", value=n.failures
            )
            silences = CounterMetricFamily(
                _P + "silences", "Silences created/expired in Alertmanager", labels=["action"]
            )
            silences.add_metric(["created"], n.silences_created)
            silences.add_metric(["expired"], n.silences_expired)
            yield silences
        per_area = GaugeMetricFamily(
            "sensornet_subdistrict_sensors",
            "Reporting sensors per subdistrict and liveness state",
            labels=["subdistrict", "state"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        offline = GaugeMetricFamily(
            "sensornet_sensor_offline",
            "1 per sensor silent past its type's cadence (offline sensors only)",
            labels=["sensor", "sensor_type", "subdistrict"],
        )
        for d in h.devices:
            state = h.states.get(d.id, "never")
            counts[(d.subdistrict, state)] += 1
            if state == "offline":
                offline.add_metric([d.id, d.type, d.subdistrict], 1)
        areas = sorted({d.subdistrict for d in h.devices})
        for area in areas:
            for state in ("online", "stale", "offline", "never"):
                per_area.add_metric([area, state], counts[(area, state)])
        yield per_area
        yield offline


def round_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        _P + "round_seconds",
        "One evaluation round: read latest, evaluate, record, notify",
        buckets=ROUND_BUCKETS,
        registry=registry,
    )


@contextlib.contextmanager
def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = "127.0.0.1",
    health: RunnerHealth | None = None,
) -> Iterator[None]:
    """Prometheus ``/metrics``, ``/livez`` and ``/readyz`` on ``port`` (0: off) while the
    runner runs. Ready: every dependency the last round used (InfluxDB, the broker,
    Alertmanager) answered it; before the first round, nothing is known to be down."""
    if not port:
        yield
        return

    def ready() -> dict[str, bool]:
        deps = health.dependencies if health is not None else {}
        return {name: reachable for name, (_, reachable) in deps.items()}

    with serve_probes(port, host, registry, ready):
        yield
