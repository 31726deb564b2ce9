"""Evaluates the alarm rules continuously: every ``interval_s`` it reads the latest reading
of each reporting sensor, feeds the evaluator, records the changes, writes the
operations view (liveness, positions, active alarms) for Grafana (``operations_view``),
and tells Alertmanager (``notify``: alerts as they fire and resolve, silences for
acknowledged alarms and maintenance windows). Its ``/metrics`` (``metrics``) carry the
liveness Prometheus alerts on, and whether the broker and InfluxDB answer.

It keeps the evaluator states in memory and rebuilds them from the active alarms (SQL) on
start, so a restart neither re-raises nor forgets an alarm. A change is stored in InfluxDB
(its ``alarm_event`` point) and then in SQL, and waits in the ``outbox`` until both took
it: an InfluxDB outage delays a change, never loses it. Across a restart, a change still
in the outbox was in neither store, so the rebuilt state does not have it either and the
next reading decides it again (docs/alerting.md, "Alarm changes are never lost")."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from alarms.alertmanager import alertmanager_client
from alarms.metrics import RunnerCollector, RunnerHealth, round_histogram, serve_metrics
from alarms.notify import Notifier
from alarms.operations_view import liveness_states, operations_view_lines
from alarms.outbox import AlarmOutbox
from alarms.relay import run_relay
from alarms.routing import RELAYED, load_routing
from sensornet.alarms.evaluate import AlarmState, evaluate
from sensornet.alarms.rules import RuleSet, load_rules
from sensornet.alarms.store import (
    AlarmRecord,
    Change,
    active_alarms,
    create_alarm_tables,
)
from sensornet.catalogue import Catalogue, load_catalogue
from sensornet.errors import InfluxError
from sensornet.influx import InfluxClient, rows
from sensornet.latest import DEVICE_STATUS, Latest, latest_of_types
from sensornet.lineprotocol import encode_lines
from sensornet.mapcrs import MapCrs
from sensornet.northbound.events import alarm_event_line
from sensornet.registry.maintenance import Window, current_windows
from sensornet.registry.store import DeviceInfo, load_devices
from sensornet.settings import Settings

log = logging.getLogger("sensornet.alarms")


class AlarmRunner:
    def __init__(
        self,
        influx: InfluxClient,
        engine: AsyncEngine,
        catalogue: Catalogue,
        rules: RuleSet,
        notifier: Notifier | None = None,
        map_crs: MapCrs = "wgs84",
    ) -> None:
        self.influx, self.engine, self.catalogue, self.rules = influx, engine, catalogue, rules
        self.map_crs = map_crs  # the basemap's coordinate system (sensornet/mapcrs.py)
        self.notifier = notifier
        self.states: dict[tuple[str, str], AlarmState] = {}
        self.outbox = AlarmOutbox()  # changes decided, not yet stored (alarms/outbox)
        self.health = RunnerHealth(notify=notifier.stats if notifier else None)

    async def start(self) -> None:
        await create_alarm_tables(self.engine)
        for a in await active_alarms(self.engine):
            since = tuple(0 if i <= a.level else None for i in range(a.level + 1))
            self.states[(a.sensor_id, a.rule_id)] = AlarmState(a.level, since, None)

    async def tick(self) -> list[Change]:
        """One pass over every reporting sensor; returns the alarm changes stored in this
        round (those decided now, and any an earlier round could not store)."""
        devices = [d for d in (await load_devices(self.engine)).values() if d.reporting]
        latest = await latest_of_types(
            self.influx, self.catalogue, sorted({d.type for d in devices})
        )
        for d in devices:
            reading = latest.get(d.id)
            if reading is None:
                continue
            night = self.rules.is_night(reading.time_ns)
            for rule in self.rules.for_type(d.type):
                value = reading.values.get(rule.quantity)
                if value is None:
                    continue
                levels = rule.levels_for(d.subdistrict, night)
                key = (d.id, rule.id)
                state, event = evaluate(
                    self.states.get(key, AlarmState()),
                    rule.op,
                    levels,
                    rule.hysteresis,
                    rule.min_duration_s,
                    value,
                    reading.time_ns,
                )
                self.states[key] = state  # the change, if any, waits in the outbox
                if event is None:
                    continue
                level = levels[event.level] if event.level is not None else None
                c = Change(
                    d.id, rule.id, d.type, d.subdistrict, rule.quantity, event.level,
                    level.name if level else "", level.severity if level else "",
                    level.threshold if level else None, float(value),
                    datetime.fromtimestamp(event.at_ns / 1e9, UTC),
                )  # fmt: skip
                self.outbox.add(
                    c,
                    functools.partial(
                        alarm_event_line, d.id, rule.id, d.type, d.subdistrict, c.severity,
                        event.kind, event.level, c.level_name, c.value, c.threshold, event.at_ns,
                    ),
                )  # fmt: skip
        # InfluxDB first, then SQL: what northbound pushes is never behind the record,
        # and a change neither took stays in the outbox for the next round
        changes = await self.outbox.flush(self.influx, self.engine)
        self.health.outbox = len(self.outbox)
        active = await active_alarms(self.engine)
        windows = await current_windows(self.engine)
        await self._write_operations_view(devices, latest, active, windows)
        if self.notifier is not None:
            await self.notifier.sync(active, windows)
        for c in changes:
            log.info(
                "alarm sensor_id=%s rule=%s level=%s value=%s",
                c.sensor_id, c.rule_id, c.level_name or "cleared", c.value,
            )  # fmt: skip
        return changes

    async def _write_operations_view(
        self,
        devices: list[DeviceInfo],
        latest: dict[str, Latest],
        active: list[AlarmRecord],
        windows: list[Window],
    ) -> None:
        said = {
            r["sensor_id"]: r["state"] == "offline"
            for r in rows(await self.influx.query(DEVICE_STATUS))
        }
        now = time.time_ns()
        at = datetime.fromtimestamp(now / 1e9, UTC)
        running = [w for w in windows if w.active_at(at)]
        states = liveness_states(devices, latest, said, self.catalogue, now)
        in_maintenance = {
            d.id for d in devices if any(w.covers(d.id, d.subdistrict) for w in running)
        }
        lines = operations_view_lines(devices, states, active, now, in_maintenance, self.map_crs)
        await self.influx.write(encode_lines(lines))
        self.health.devices, self.health.states = devices, states
        self.health.severities = Counter(a.severity for a in active)
        self.health.maintenance_active = len(running)

    async def _keep_alertmanager_told(self) -> None:
        """A round without InfluxDB still re-sends the active alarms (from SQL): an alert
        not re-sent within 4 resends is resolved by Alertmanager itself, so an outage of
        InfluxDB would otherwise end every alarm there and raise it again afterwards."""
        if self.notifier is None:
            return
        try:
            await self.notifier.sync(
                await active_alarms(self.engine), await current_windows(self.engine)
            )
        except Exception as exc:  # the registry away too: the next round tries again
            log.warning("alarm notifications skipped: %s", exc)

    async def check_dependencies(self, broker: tuple[str, int] | None) -> None:
        """Whether InfluxDB and the broker answer: exported for the platform-health alerts."""
        deps = {"influxdb": (str(self.influx._http.base_url), await self.influx.ping())}
        if broker is not None:
            deps["broker"] = (f"{broker[0]}:{broker[1]}", await _reachable(*broker))
        self.health.dependencies = deps

    async def run(
        self,
        stop: asyncio.Event,
        interval_s: float,
        broker: tuple[str, int] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Tick until ``stop``; call :meth:`start` first. With a metrics ``registry``, each
        round's duration goes to its histogram."""
        rounds = round_histogram(registry) if registry is not None else None
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await self.check_dependencies(broker)
                await self.tick()
            except (InfluxError, SQLAlchemyError) as exc:  # InfluxDB or the registry down:
                # keep state and the outbox, try again next round
                self.health.rounds_failed += 1
                self.health.outbox = len(self.outbox)
                log.warning(
                    "alarm evaluation skipped (%d changes wait to be stored): %s",
                    len(self.outbox), exc,
                )  # fmt: skip
                await self._keep_alertmanager_told()
            if rounds is not None:
                rounds.observe(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


async def _reachable(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def run_alarms(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """The runner wired from settings (demo, CLI, tests)."""
    from sensornet.influx import influx_client
    from sensornet.registry.store import open_registry

    async with contextlib.AsyncExitStack() as stack:
        influx = await stack.enter_async_context(influx_client(settings))
        engine = await stack.enter_async_context(open_registry(settings.registry_database_url))
        notifier = None
        if settings.alertmanager_url:
            client = await stack.enter_async_context(alertmanager_client(settings.alertmanager_url))
            link = settings.alert_link_base or f"http://{settings.api_host}:{settings.api_port}"
            notifier = Notifier(client, link, settings.alert_resend_s)
        runner = AlarmRunner(
            influx, engine, load_catalogue(), load_rules(), notifier, settings.map_crs
        )
        await runner.start()
        registry = CollectorRegistry(auto_describe=True)
        registry.register(RunnerCollector(runner.health))
        stack.enter_context(
            serve_metrics(
                registry, settings.alarm_metrics_port, settings.metrics_host, runner.health
            )
        )
        if ready is not None:
            ready.set()
        broker = (settings.mqtt_host, settings.mqtt_port)
        routing = load_routing(settings.alert_routing_file)
        tasks = [runner.run(stop, settings.alarm_interval_s, broker, registry)]
        if any(r.kind in RELAYED for r in routing.receivers.values()):
            tasks.append(run_relay(settings, routing, stop))  # WeCom/DingTalk robots
        await asyncio.gather(*tasks)
