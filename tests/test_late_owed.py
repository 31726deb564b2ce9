"""Which late points the ingester notes (sensornet.northbound.late, ``LateNotes.owed``)
and how long a new subscription's first read waits (``creation_hold_s``): pure rules,
checked here without services (tests/test_northbound_late_gate.py runs them for real)."""

from __future__ import annotations

import time

from sensornet.northbound.late import OWED_MAX_AGE_S, LateNotes, creation_hold_s

S = 10**9
NOW = 1_796_000_000 * S


def _line(t: int, measurement: str = "air_quality") -> str:
    return f"{measurement},sensor_id=AQ-1,type=air_quality pm25=1.0 {t}"


def _late() -> LateNotes:
    return LateNotes(["air_quality"], settle_s=30.0, ingester="ing-1")


def test_no_view_yet_notes_every_late_point() -> None:
    late = _late()  # the subscriptions not read yet: fail safe
    assert len(late.notes([_line(NOW - 3600 * S)], NOW)) == 1
    assert late.notes([_line(NOW - 1 * S)], NOW) == []  # not late


def test_nobody_subscribed_no_notes() -> None:
    late = _late()
    late.owed({}, time.monotonic())
    assert late.notes([_line(NOW - 3600 * S), _line(NOW - 60 * S, "device_status")], NOW) == []
    late.owed({"alarms": 0, "aggregates": 0}, time.monotonic())  # kinds the ingester never notes
    assert late.notes([_line(NOW - 3600 * S)], NOW) == []


def test_only_points_from_the_earliest_start_on() -> None:
    late = _late()
    late.owed({"readings": NOW - 600 * S}, time.monotonic())
    notes = late.notes([_line(NOW - 3600 * S), _line(NOW - 60 * S), _line(NOW - 1 * S)], NOW)
    assert len(notes) == 1 and f"point_time={NOW - 60 * S}i" in notes[0]
    # a status subscription does not make readings owed, nor the other way round
    assert late.notes([_line(NOW - 60 * S, "device_status")], NOW) == []
    late.owed({"status": 0}, time.monotonic())
    assert late.notes([_line(NOW - 60 * S)], NOW) == []
    assert len(late.notes([_line(NOW - 60 * S, "device_status")], NOW)) == 1


def test_a_view_not_renewed_expires_and_every_late_point_is_noted() -> None:
    late = _late()
    late.owed({}, time.monotonic() - OWED_MAX_AGE_S - 0.1)
    assert len(late.notes([_line(NOW - 3600 * S)], NOW)) == 1


def test_creation_hold() -> None:
    created = NOW
    # the API's default start (its creation), default settle: owed nothing left unnoted
    assert creation_hold_s(created, created, 30.0, 15.0) == 0.0
    # a start in the past, or a settle time too short to cover the ingesters' lag: wait
    assert creation_hold_s(created - 60 * S, created, 30.0, 15.0) == OWED_MAX_AGE_S + 15.0
    assert creation_hold_s(created, created, 0.3, 15.0) == OWED_MAX_AGE_S + 15.0
    assert creation_hold_s(created, created, 2 * OWED_MAX_AGE_S, 15.0) == 0.0
