"""How the simulated city behaves (``profiles.yaml``): fleet mix, gateways and per-quantity
signal shapes. Kept as data so a new sensor type needs no simulator code."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import yaml

from sensornet.errors import CatalogueError

CYCLES = frozenset(
    {
        "flat",
        "zero",
        "traffic",
        "noise",
        "air",
        "ozone",
        "temperature",
        "humidity",
        "night",
        "fill",
        "calm",
        "mid",
    }
)


@dataclass(frozen=True, slots=True)
class QuantityProfile:
    cycle: str = "flat"
    noise: float = 0.03
    drift: float = 0.001
    rain: float = 0.0
    ponding: float = 0.0
    pollution: float = 0.0
    p_true: float = 0.02
    invert: bool = False


@dataclass(frozen=True)
class Profiles:
    mix: dict[str, float] = field(default_factory=dict)
    via_gateway: frozenset[str] = frozenset()
    per_gateway: int = 32
    quantities: dict[str, QuantityProfile] = field(default_factory=dict)

    def quantity(self, type_id: str, quantity_id: str) -> QuantityProfile:
        return self.quantities.get(f"{type_id}.{quantity_id}", QuantityProfile())

    def weight(self, type_id: str) -> float:
        return self.mix.get(type_id, 1.0)


def _quantity(key: str, raw: object) -> QuantityProfile:
    if not isinstance(raw, dict):
        raise CatalogueError(f"profiles.yaml: {key}: must be a mapping")
    known = set(QuantityProfile.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise CatalogueError(f"profiles.yaml: {key}: unknown key(s) {sorted(unknown)}")
    profile = QuantityProfile(**raw)
    if profile.cycle not in CYCLES:
        raise CatalogueError(
            f"profiles.yaml: {key}: cycle {profile.cycle!r} not one of {sorted(CYCLES)}"
        )
    return profile


@functools.cache
def load_profiles() -> Profiles:
    raw = yaml.safe_load((resources.files("gateway_sim") / "profiles.yaml").read_text("utf-8"))
    if not isinstance(raw, dict):
        raise CatalogueError("profiles.yaml: must be a mapping")
    return Profiles(
        mix={str(k): float(v) for k, v in raw.get("mix", {}).items()},
        via_gateway=frozenset(raw.get("via_gateway", [])),
        per_gateway=int(raw.get("per_gateway", 32)),
        quantities={str(k): _quantity(k, v) for k, v in raw.get("quantities", {}).items()},
    )
