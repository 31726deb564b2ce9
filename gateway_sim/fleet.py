"""Deterministic fleet: sensors of the catalogue's types placed in the district's areas.

Without street geometry, placement is believable rather than exact: areas are weighted by
size; road devices sit on a coarse grid of main roads, street devices on a finer grid of
streets, park devices around a few parks per area, river devices in areas on the river,
and waterlogging gauges preferably in low-lying areas. Sensors of gateway types are
attached to a gateway of their own subdistrict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gateway_sim.payloads import chip_id_for, device_format, senml_name_for
from gateway_sim.profiles import Profiles, load_profiles
from sensornet.catalogue import Catalogue
from sensornet.district import District, Subdistrict
from sensornet.registry.store import DeviceInfo

_ID_PREFIX = {
    "air_quality": "AQ",
    "noise": "NS",
    "waterlogging": "WL",
    "manhole_cover": "MH",
    "smoke": "SM",
    "traffic_flow": "TF",
    "parking": "PK",
    "street_light": "SL",
    "waste_bin": "WB",
    "structural": "ST",
    "weather": "WX",
    "water_quality": "WQ",
    "river_level": "RL",
    "hydrant": "HY",
    "community_air": "SC",
}
_M_PER_DEG = 111_320.0
SENML_FORMATS = ("senml", "senml_cbor")
_GRID_M = {"road": 400.0, "street": 120.0}
_LOW_LYING_WEIGHT = 6.0  # waterlogging gauges go where water collects
_PARKS_PER_AREA = 2
_PARK_RADIUS_M = 150.0


def type_counts(catalogue: Catalogue, count: int, profiles: Profiles) -> dict[str, int]:
    """At least one of every type when ``count`` allows, the rest by the mix (largest
    remainder), so small fleets still cover the catalogue."""
    types = list(catalogue.types)
    base = {t: (1 if count >= len(types) else 0) for t in types}
    if count < len(types):
        for t in types[:count]:
            base[t] = 1
        return base
    rest = count - len(types)
    weights = np.array([profiles.weight(t) for t in types], dtype=float)
    share = weights / weights.sum() * rest
    whole = np.floor(share).astype(int)
    order = np.argsort(-(share - whole), kind="stable")
    for k in order[: rest - int(whole.sum())]:
        whole[k] += 1
    return {t: base[t] + int(n) for t, n in zip(types, whole, strict=True)}


def _area_weights(placement: str, type_id: str, areas: Sequence[Subdistrict]) -> np.ndarray:
    weights = np.array([a.radius_m**2 for a in areas], dtype=float)
    if placement == "river":
        on_river = np.array([a.river for a in areas])
        if on_river.any():
            weights = weights * on_river
    if type_id == "waterlogging":
        weights = weights * np.array([_LOW_LYING_WEIGHT if a.low_lying else 1.0 for a in areas])
    normalised: np.ndarray = weights / weights.sum()
    return normalised


def _snap(offset_m: np.ndarray, grid_m: float, along_x: np.ndarray) -> np.ndarray:
    """Move each point onto the nearest grid line, east-west or north-south."""
    out = offset_m.copy()
    axis = np.where(along_x, 1, 0)
    rows = np.arange(len(out))
    out[rows, axis] = np.round(out[rows, axis] / grid_m) * grid_m
    return out


def _place(
    rng: np.random.Generator, placement: str, areas: Sequence[Subdistrict], chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = len(chosen)
    radius = np.array([areas[k].radius_m for k in chosen])
    r = radius * np.sqrt(rng.random(n))
    theta = rng.uniform(0, 2 * math.pi, n)
    offset = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)  # north, east (m)
    if placement in _GRID_M:
        offset = _snap(offset, _GRID_M[placement], rng.random(n) < 0.5)
    elif placement == "park":
        park = rng.integers(0, _PARKS_PER_AREA, n)
        park_angle = (park + 1) * 2.1 + chosen  # fixed per area and park
        centre = np.stack(
            [0.5 * radius * np.cos(park_angle), 0.5 * radius * np.sin(park_angle)], axis=1
        )
        offset = centre + rng.normal(0, _PARK_RADIUS_M / 2, (n, 2))
    lat0 = np.array([areas[k].lat for k in chosen])
    lon0 = np.array([areas[k].lon for k in chosen])
    lat = lat0 + offset[:, 0] / _M_PER_DEG
    lon = lon0 + offset[:, 1] / (_M_PER_DEG * np.cos(np.radians(lat0)))
    return np.round(lat, 6), np.round(lon, 6)


def gateway_id(district: District, subdistrict_index: int, number: int) -> str:
    return f"GW-{district.id.upper()[:2]}{subdistrict_index:02d}{number:03d}"


def build_fleet(
    catalogue: Catalogue,
    district: District,
    count: int,
    seed: int = 151,
    types: Sequence[str] | None = None,
    gateways: bool = True,
    profiles: Profiles | None = None,
) -> list[DeviceInfo]:
    """``count`` sensors, deterministic by ``seed``; ids are stable for a given seed."""
    profiles = profiles or load_profiles()
    rng = np.random.default_rng(seed)
    areas = list(district.subdistricts.values())
    if types is not None:
        counts = {
            t: count // len(types) + (1 if i < count % len(types) else 0)
            for i, t in enumerate(types)
        }
    else:
        counts = type_counts(catalogue, count, profiles)
    fleet: list[DeviceInfo] = []
    attached: dict[int, int] = {}  # subdistrict index -> sensors attached so far
    number = 0
    for type_id, n in counts.items():
        if n == 0:
            continue
        sensor_type = catalogue.get(type_id)
        chosen = rng.choice(
            len(areas), size=n, p=_area_weights(sensor_type.placement, type_id, areas)
        )
        lat, lon = _place(rng, sensor_type.placement, areas, chosen)
        prefix = _ID_PREFIX.get(type_id, type_id[:2].upper())
        for k in range(n):
            area = int(chosen[k])
            gw = None
            if gateways and type_id in profiles.via_gateway:
                slot = attached.get(area, 0)
                attached[area] = slot + 1
                gw = gateway_id(district, area, slot // profiles.per_gateway)
            sensor_id = f"{prefix}-{district.id.upper()[:2]}{number:05d}"
            speaks = None if gw else device_format(sensor_id, type_id)
            fleet.append(
                DeviceInfo(
                    sensor_id,
                    type_id,
                    areas[area].id,
                    float(lat[k]),
                    float(lon[k]),
                    "active",
                    gw,
                    senml_name=senml_name_for(sensor_id) if speaks in SENML_FORMATS else None,
                    sc_chip=chip_id_for(sensor_id) if speaks == "sensor_community" else None,
                )
            )
            number += 1
    return fleet


async def fleet_from_registry(url: str) -> list[DeviceInfo]:
    """The registry's reporting sensors, ordered by id, as the fleet to simulate."""
    from sensornet.registry.store import load_devices, open_registry

    async with open_registry(url) as engine:
        devices = await load_devices(engine)
    return [d for _, d in sorted(devices.items()) if d.reporting]
