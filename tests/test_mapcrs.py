"""WGS84 → GCJ-02 (sensornet/mapcrs.py, on coordtransform) against published reference
points: the WGS84/GCJ-02 pairs of the eviltransform project's test table (Shanghai,
Shenzhen, Beijing), the same three pairs its Go, PHP and Python ports test against."""

from __future__ import annotations

import math

import pytest

from sensornet.mapcrs import to_map

# (wgs lat, wgs lon, gcj lat, gcj lon)
REFERENCE = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (a[0] - b[0]) * 111_320
    dlon = (a[1] - b[1]) * 111_320 * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlon)


@pytest.mark.parametrize(("lat", "lon", "glat", "glon"), REFERENCE)
def test_gcj02_matches_the_published_reference_points(
    lat: float, lon: float, glat: float, glon: float
) -> None:
    got = to_map(lat, lon, "gcj02")
    assert _metres(got, (glat, glon)) < 0.05  # 5 cm: the same formula, float rounding
    assert _metres(got, (lat, lon)) > 300  # the offset a WGS84 marker would show


def test_wgs84_is_left_alone_and_gcj02_is_identity_outside_china() -> None:
    assert to_map(31.2, 121.45, "wgs84") == (31.2, 121.45)
    assert to_map(52.52, 13.40, "gcj02") == pytest.approx((52.52, 13.40))  # Berlin


def test_an_unknown_coordinate_system_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown map coordinate system 'bd09'"):
        to_map(31.2, 121.45, "bd09")  # type: ignore[arg-type]
