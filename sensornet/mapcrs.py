"""Positions in the coordinate system of the map's tiles.

The registry keeps WGS84 (what GPS and the devices report). Chinese tile services
(AutoNavi/Gaode, Tencent, Google China) draw in GCJ-02, the obfuscated datum Chinese law
requires for published maps: a WGS84 point drawn on them lands 300-600 m off in Shanghai.
So the map reads positions already converted to ``SENSORNET_MAP_CRS``; the alarm runner
converts when it writes the operations view (docs/decisions.md "Operations view": Grafana
cannot, InfluxQL has no such function). The conversion is coordtransform's (docs/decisions.md
says why that library); outside China GCJ-02 equals WGS84, as the library does."""

from __future__ import annotations

from typing import Literal

import coordTransform

MapCrs = Literal["wgs84", "gcj02"]
CRS_NAMES: tuple[MapCrs, ...] = ("wgs84", "gcj02")


def to_map(lat: float, lon: float, crs: MapCrs) -> tuple[float, float]:
    """(lat, lon) in WGS84 → (lat, lon) in ``crs``."""
    if crs == "wgs84":
        return lat, lon
    if crs == "gcj02":
        glon, glat = coordTransform.wgs84_to_gcj02(lon, lat)
        return float(glat), float(glon)
    raise ValueError(f"unknown map coordinate system {crs!r}; use one of {CRS_NAMES}")
