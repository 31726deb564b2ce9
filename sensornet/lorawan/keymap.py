"""From the keys of a decoded LoRaWAN payload to catalogue quantities and device health.

The map is data (``sensornet/data/lorawan_keys.yaml``, its header says how a key is looked
up), checked against the catalogue when loaded: a map naming a quantity its type does not
have fails at start-up with the file and entry named. Pure apart from reading the file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from sensornet.catalogue import Catalogue, Entry, load_catalogue, read_yaml
from sensornet.errors import CatalogueError

HEALTH_FIELDS = frozenset({"battery_v", "battery_pct", "margin"})
MAX_FLATTEN_DEPTH = 3
Route = Literal["reading", "health", "drop"]
READING: Route = "reading"
HEALTH: Route = "health"
DROP: Route = "drop"


@dataclass(frozen=True)
class KeyMap:
    health: Mapping[str, str] = field(default_factory=dict)
    types: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    applications: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def split(
        self, values: Mapping[str, Any], sensor_type: str, application: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(readings, health)``: each key named as the catalogue or ``device_health``
        knows it. A key mapped to ``None`` is dropped (on purpose, in the file)."""
        readings: dict[str, Any] = {}
        health: dict[str, Any] = {}
        for key, value in flatten(values).items():
            where, target = self.route(key, sensor_type, application)
            if where == READING:
                readings[target] = value
            elif where == HEALTH:
                health[target] = value
        return readings, health

    def route(self, key: str, sensor_type: str, application: str) -> tuple[Route, str]:
        """Where one (flat) key goes: ``(READING, quantity)``, ``(HEALTH, health field)``
        or ``(DROP, key)``. The one rule, for ``split`` and the envelope fast lane."""
        app = self.applications.get(application, {})
        by_type = self.types.get(sensor_type, {})
        if key in app or key in by_type:
            target = app[key] if key in app else by_type[key]
            if target is None:
                return DROP, key
            return (HEALTH if target in HEALTH_FIELDS else READING), target
        if key in self.health:
            return HEALTH, self.health[key]
        return READING, key


def flatten(values: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested objects as ``outer_inner`` keys (vendors' decoders nest by channel)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < MAX_FLATTEN_DEPTH:
            out.update(flatten(value, f"{name}_", depth + 1))
        else:
            out[name] = value
    return out


def load_keymap(path: Path | None = None, catalogue: Catalogue | None = None) -> KeyMap:
    """The packaged map (``path=None``, read once) or another file, checked."""
    if path is None and catalogue is None:
        return _packaged()
    source = path or resources.files("sensornet") / "data" / "lorawan_keys.yaml"
    return _parse(read_yaml(source), str(source), catalogue or load_catalogue())


@functools.cache
def _packaged() -> KeyMap:
    source = resources.files("sensornet") / "data" / "lorawan_keys.yaml"
    return _parse(read_yaml(source), str(source), load_catalogue())


def _names(entry: Entry, key: str) -> dict[str, Any]:
    value = entry.raw.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        entry.fail(f"{key} must be a mapping of names")
    return value


def _parse(raw: object, source: str, catalogue: Catalogue) -> KeyMap:
    top = Entry(
        source, "", raw, required=("version",), optional=("health", "types", "applications")
    )
    if top.raw["version"] != 1:
        top.fail(f"version {top.raw['version']!r} is not supported (expected 1)")
    health = _names(top, "health")
    for key, target in health.items():
        if target not in HEALTH_FIELDS:
            top.fail(f"health {key!r}: {target!r} is not one of {sorted(HEALTH_FIELDS)}")
    types: dict[str, dict[str, str | None]] = {}
    for type_id, names in _names(top, "types").items():
        sensor_type = catalogue.types.get(type_id)
        if sensor_type is None:
            raise CatalogueError(f"{source}: types: {type_id!r} is not a catalogue type")
        types[type_id] = _targets(source, f"types {type_id!r}", names, set(sensor_type.quantities))
    every = {q for t in catalogue.types.values() for q in t.quantities}
    applications = {
        str(app): _targets(source, f"applications {app!r}", names, every)
        for app, names in _names(top, "applications").items()
    }
    return KeyMap(health, types, applications)


def _targets(source: str, where: str, names: object, allowed: set[str]) -> dict[str, str | None]:
    if not isinstance(names, dict):
        raise CatalogueError(f"{source}: {where} must be a mapping of key: quantity")
    out: dict[str, str | None] = {}
    for key, target in names.items():
        if target is not None and target not in allowed and target not in HEALTH_FIELDS:
            raise CatalogueError(
                f"{source}: {where}: {key!r} maps to {target!r}, not a quantity there"
            )
        out[str(key)] = target
    return out
