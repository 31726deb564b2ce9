"""The sensor status lifecycle as data: which status may follow which.

planned → installed → active ⇄ maintenance, and any living status → retired. Retired is
final: a replaced sensor gets a new id, so its history stays its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from sensornet.errors import SensornetError

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "planned": frozenset({"installed", "retired"}),
    "installed": frozenset({"active", "maintenance", "retired"}),
    "active": frozenset({"maintenance", "retired"}),
    "maintenance": frozenset({"active", "retired"}),
    "retired": frozenset(),
}


class TransitionError(SensornetError):
    """A status change the lifecycle does not allow (e.g. retired → active)."""


def check_transition(sensor_id: str, current: str, new: str) -> None:
    if new not in TRANSITIONS:
        raise TransitionError(f"sensor {sensor_id}: unknown status {new!r}")
    if new != current and new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (retired is final)"
        raise TransitionError(
            f"sensor {sensor_id}: cannot go from {current} to {new}; allowed: {allowed}"
        )
