"""Deterministic fleet: sensors of the catalogue's types placed in the district's areas."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

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
}


def _place(rng: random.Random, area: Subdistrict) -> tuple[float, float]:
    """Uniform point in the area's disc (equirectangular, fine at city scale)."""
    r = area.radius_m * math.sqrt(rng.random())
    theta = rng.uniform(0, 2 * math.pi)
    dlat = (r * math.cos(theta)) / 111_320
    dlon = (r * math.sin(theta)) / (111_320 * math.cos(math.radians(area.lat)))
    return round(area.lat + dlat, 6), round(area.lon + dlon, 6)


def _areas_for(placement: str, areas: Sequence[Subdistrict]) -> Sequence[Subdistrict]:
    if placement == "river":
        return [a for a in areas if a.river] or areas
    return areas


def build_fleet(
    catalogue: Catalogue,
    district: District,
    count: int,
    seed: int = 151,
    types: Sequence[str] | None = None,
) -> list[DeviceInfo]:
    """``count`` sensors, types round-robin, areas chosen by the type's placement."""
    rng = random.Random(seed)
    type_ids = list(types or catalogue.types)
    areas = list(district.subdistricts.values())
    fleet = []
    for i in range(count):
        type_id = type_ids[i % len(type_ids)]
        sensor_type = catalogue.get(type_id)
        area = rng.choice(list(_areas_for(sensor_type.placement, areas)))
        lat, lon = _place(rng, area)
        prefix = _ID_PREFIX.get(type_id, type_id[:2].upper())
        fleet.append(
            DeviceInfo(
                f"{prefix}-{district.id.upper()[:2]}{i:05d}", type_id, area.id, lat, lon, "active"
            )
        )
    return fleet
