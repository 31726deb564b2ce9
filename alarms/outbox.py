"""The alarm changes the runner has decided but not yet stored, in the order it decided
them: each is an ``alarm_event`` point in InfluxDB first (what the northbound pusher and
the history read), then a change of its episode in SQL (what Alertmanager, the API and a
restarted runner read). Nothing leaves the outbox before its store took it, so an
InfluxDB (or registry) that fails a round only delays the change: every round writes
what is still waiting, oldest first, before anything newer.

**Stamps.** Each change gets its point's time once, when decided (unique within the
runner: one alarm's changes, and two alarms of one sensor, never share a time), and keeps
it through every retry: same series and time overwrite in InfluxDB, so a write that
timed out but was stored after all is not stored twice.

**Late points.** The pusher reads alarm changes 1 s behind now
(``alarms.northbound.worker.WRITE_STAMPED_SETTLE_NS``). A point written later than that
after its stamp (a retry, a slow InfluxDB) may be behind the pusher's cursor, so it goes
with a late **note** (``sensornet.northbound.late``, the ingester's mechanism for
readings) in the same request: a point whose write starts over half that settle after its
stamp is noted; one whose write ended later than that gets its note in a second request
(retried like the points). The pusher delivers a noted point from the notes' stream and
its regular read leaves it out, so it is pushed once (docs/northbound.md, "Late
points")."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from sensornet.alarms.store import Change, apply_changes
from sensornet.errors import InfluxError
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.northbound.events import ALARM_EVENT_MEASUREMENT
from sensornet.northbound.late import LATE_MEASUREMENT

log = logging.getLogger("sensornet.alarms")

#: Half the pusher's settle for points stamped when written (1 s): a point whose write
#: starts (or ends) later than this after its stamp is noted.
NOTE_AFTER_NS = 500_000_000
#: The notes' ``ingester`` tag (their series: one per noting process).
NOTER = "alarm-runner"


@dataclass(frozen=True, slots=True)
class Unwritten:
    change: Change
    line: str  # the alarm_event point
    stamp: int


class AlarmOutbox:
    def __init__(self) -> None:
        self.unwritten: list[Unwritten] = []  # not in InfluxDB yet
        self.unrecorded: list[Change] = []  # in InfluxDB, not in SQL yet
        self.notes_due: list[tuple[str, int]] = []  # (sensor id, stamp) to note
        self._last = 0

    def stamp(self) -> int:
        """Now, strictly after every stamp handed out before."""
        self._last = max(time.time_ns(), self._last + 1)
        return self._last

    def add(self, change: Change, line_at: Callable[[int], str]) -> None:
        stamp = self.stamp()
        self.unwritten.append(Unwritten(change, line_at(stamp), stamp))

    def __len__(self) -> int:
        return len(self.unwritten) + len(self.unrecorded)

    def _notes(self, points: list[tuple[str, int]]) -> list[str]:
        return [
            encode_point(
                LATE_MEASUREMENT,
                {"ingester": NOTER, "measurement": ALARM_EVENT_MEASUREMENT, "sensor_id": s},
                {"point_time": t},
                self.stamp(),  # one note per stamp: two of one sensor never overwrite
            )
            for s, t in points
        ]

    async def flush(self, influx: InfluxClient, engine: AsyncEngine) -> list[Change]:
        """Write what waits, then record it; returns the changes recorded now. An
        ``InfluxError`` (or the registry's error) leaves everything not stored in the
        outbox for the next round."""
        if self.unwritten or self.notes_due:
            started = time.time_ns()
            late = [(u.change.sensor_id, u.stamp) for u in self.unwritten
                    if u.stamp <= started - NOTE_AFTER_NS]  # fmt: skip
            lines = [u.line for u in self.unwritten] + self._notes(self.notes_due + late)
            await influx.write(encode_lines(lines))
            ended = time.time_ns()
            noted = set(late)
            self.notes_due = [
                (u.change.sensor_id, u.stamp) for u in self.unwritten
                if (u.change.sensor_id, u.stamp) not in noted
                and u.stamp <= ended - NOTE_AFTER_NS
            ]  # fmt: skip
            self.unrecorded += [u.change for u in self.unwritten]
            self.unwritten = []
            if self.notes_due:  # the write took long: the pusher may have passed them
                try:
                    await influx.write(encode_lines(self._notes(self.notes_due)))
                    self.notes_due = []
                except InfluxError as exc:
                    log.warning("alarm notes held for the next round: %s", exc)
        recorded, self.unrecorded = self.unrecorded, []
        try:
            await apply_changes(engine, recorded)
        except BaseException:
            self.unrecorded = recorded + self.unrecorded
            raise
        return recorded
