"""Evaluates the alarm rules continuously: every ``interval_s`` it reads the latest reading
of each reporting sensor, feeds the evaluator, records the changes, and writes the
operations view (liveness, positions, active alarms) for Grafana (``operations_view``).

It keeps the evaluator states in memory and rebuilds them from the active alarms on start,
so a restart neither re-raises nor forgets an alarm."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from alarms.operations_view import liveness_states, operations_view_lines
from sensornet.alarms.evaluate import AlarmState, evaluate
from sensornet.alarms.rules import RuleSet, load_rules
from sensornet.alarms.store import Change, active_alarms, apply_changes, create_alarm_tables
from sensornet.catalogue import Catalogue, load_catalogue
from sensornet.errors import InfluxError
from sensornet.influx import InfluxClient, rows
from sensornet.latest import DEVICE_STATUS, Latest, latest_of_types
from sensornet.lineprotocol import encode_lines
from sensornet.northbound.events import alarm_event_line
from sensornet.registry.store import DeviceInfo, load_devices
from sensornet.settings import Settings

log = logging.getLogger("sensornet.alarms")


class AlarmRunner:
    def __init__(
        self, influx: InfluxClient, engine: AsyncEngine, catalogue: Catalogue, rules: RuleSet
    ) -> None:
        self.influx, self.engine, self.catalogue, self.rules = influx, engine, catalogue, rules
        self.states: dict[tuple[str, str], AlarmState] = {}

    async def start(self) -> None:
        await create_alarm_tables(self.engine)
        for a in await active_alarms(self.engine):
            since = tuple(0 if i <= a.level else None for i in range(a.level + 1))
            self.states[(a.sensor_id, a.rule_id)] = AlarmState(a.level, since, None)

    async def tick(self) -> list[Change]:
        """One pass over every reporting sensor; returns (and stores) the alarm changes."""
        devices = [d for d in (await load_devices(self.engine)).values() if d.reporting]
        latest = await latest_of_types(
            self.influx, self.catalogue, sorted({d.type for d in devices})
        )
        changes: list[Change] = []
        pushed: list[Callable[[int], str]] = []  # northbound alarm events, stamped when written
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
                self.states[key] = state
                if event is None:
                    continue
                level = levels[event.level] if event.level is not None else None
                changes.append(
                    Change(
                        d.id, rule.id, d.type, d.subdistrict, rule.quantity, event.level,
                        level.name if level else "", level.severity if level else "",
                        level.threshold if level else None, float(value),
                        datetime.fromtimestamp(event.at_ns / 1e9, UTC),
                    )
                )  # fmt: skip
                c = changes[-1]
                pushed.append(
                    functools.partial(
                        alarm_event_line, d.id, rule.id, d.type, d.subdistrict, c.severity,
                        event.kind, event.level, c.level_name, c.value, c.threshold, event.at_ns,
                    )
                )  # fmt: skip
        if pushed:  # before the SQL record: what northbound pushes is never behind it
            now_ns = time.time_ns()
            await self.influx.write(encode_lines([line(now_ns) for line in pushed]))
        await apply_changes(self.engine, changes)
        await self._write_operations_view(devices, latest)
        for c in changes:
            log.info(
                "alarm sensor_id=%s rule=%s level=%s value=%s",
                c.sensor_id, c.rule_id, c.level_name or "cleared", c.value,
            )  # fmt: skip
        return changes

    async def _write_operations_view(
        self, devices: list[DeviceInfo], latest: dict[str, Latest]
    ) -> None:
        said = {
            r["sensor_id"]: r["state"] == "offline"
            for r in rows(await self.influx.query(DEVICE_STATUS))
        }
        now = time.time_ns()
        states = liveness_states(devices, latest, said, self.catalogue, now)
        active = await active_alarms(self.engine)
        await self.influx.write(encode_lines(operations_view_lines(devices, states, active, now)))

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Tick until ``stop``; call :meth:`start` first."""
        while not stop.is_set():
            try:
                await self.tick()
            except InfluxError as exc:  # InfluxDB down: keep state, try again next round
                log.warning("alarm evaluation skipped: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


async def run_alarms(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """The runner wired from settings (demo, CLI, tests)."""
    from sensornet.influx import influx_client
    from sensornet.registry.store import open_registry

    async with (
        influx_client(settings) as influx,
        open_registry(settings.registry_database_url) as engine,
    ):
        runner = AlarmRunner(influx, engine, load_catalogue(), load_rules())
        await runner.start()
        if ready is not None:
            ready.set()
        await runner.run(stop, settings.alarm_interval_s)
