"""The pure alarm evaluator: one rule, one sensor, one reading at a time.

Escalation waits until the condition has held ``min_duration_s`` (measured on reading
timestamps, so it is the same live and on replay); de-escalation and clearing need the
value back past the threshold by ``hysteresis`` and happen at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sensornet.alarms.rules import Level, Op

EventKind = Literal["raised", "changed", "cleared"]


@dataclass(frozen=True, slots=True)
class AlarmState:
    """``level``: index of the active level (None: no alarm); ``since``: per level, the
    reading time since which the value has held it without a break (None: not holding)."""

    level: int | None = None
    since: tuple[int | None, ...] = ()
    last_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    level: int | None  # new level; None when cleared
    at_ns: int
    value: float | bool


def _holds(op: Op, level: Level, value: float | bool, hysteresis: float) -> bool:
    if op == "is_true":
        return bool(value)
    assert level.threshold is not None
    v = float(value)
    if op == "above":
        return v > level.threshold - hysteresis
    return v < level.threshold + hysteresis


def target_level(
    op: Op, levels: tuple[Level, ...], value: float | bool, current: int | None, hysteresis: float
) -> int | None:
    """Highest level the value reaches: levels up to the active one keep it with hysteresis,
    higher ones need the threshold itself to be crossed."""
    found = None
    for i, level in enumerate(levels):
        keep = current is not None and i <= current
        if _holds(op, level, value, hysteresis if keep else 0.0):
            found = i
    return found


def evaluate(
    state: AlarmState,
    op: Op,
    levels: tuple[Level, ...],
    hysteresis: float,
    min_duration_s: float,
    value: float | bool,
    at_ns: int,
) -> tuple[AlarmState, Event | None]:
    """Feed one reading; returns the new state and the event it causes, if any. Readings
    not newer than the last one are ignored (the runner may see the same latest twice)."""
    if state.last_ns is not None and at_ns <= state.last_ns:
        return state, None
    current = state.level
    previous = state.since if len(state.since) == len(levels) else (None,) * len(levels)
    since: list[int | None] = []
    new_level: int | None = None
    for i, level in enumerate(levels):
        keep = current is not None and i <= current
        if not _holds(op, level, value, hysteresis if keep else 0.0):
            since.append(None)
            continue
        before = previous[i]
        held_from = at_ns if before is None else before
        since.append(held_from)
        if keep or (at_ns - held_from) / 1e9 >= min_duration_s:
            new_level = i
    new = AlarmState(new_level, tuple(since), at_ns)
    if new_level == current:
        return new, None
    kind: EventKind = "raised" if current is None else "cleared" if new_level is None else "changed"
    return new, Event(kind, new_level, at_ns, value)
