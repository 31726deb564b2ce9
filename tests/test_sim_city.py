"""The simulated city: believable placement, deterministic signals inside the catalogue's
valid ranges, daily cycles and weather episodes that behave like weather."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gateway_sim.fleet import build_fleet
from gateway_sim.signals import City
from gateway_sim.weather import Episode, Weather
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district

CATALOGUE = load_catalogue()
DISTRICT = load_district()
MONDAY_NOON_UTC = 1_795_579_200.0  # 2026-11-24 04:00 UTC is 12:00 in Shanghai; a Tuesday
HOUR = 3600.0


def _local(hour: float) -> float:
    """A weekday at ``hour`` Shanghai time."""
    return MONDAY_NOON_UTC - 12 * HOUR + hour * HOUR


def test_fleet_is_deterministic_and_covers_the_catalogue() -> None:
    a = build_fleet(CATALOGUE, DISTRICT, 500, seed=3)
    assert a == build_fleet(CATALOGUE, DISTRICT, 500, seed=3)
    assert a != build_fleet(CATALOGUE, DISTRICT, 500, seed=4)
    assert len({d.id for d in a}) == 500
    assert set(Counter(d.type for d in a)) == set(CATALOGUE.types)
    small = build_fleet(CATALOGUE, DISTRICT, len(CATALOGUE.types))
    assert sorted(d.type for d in small) == sorted(CATALOGUE.types)


def test_placement_follows_the_type() -> None:
    fleet = build_fleet(CATALOGUE, DISTRICT, 3000, seed=9)
    areas = DISTRICT.subdistricts
    river = [d for d in fleet if CATALOGUE.get(d.type).placement == "river"]
    assert river and all(areas[d.subdistrict].river for d in river)
    wl = [d for d in fleet if d.type == "waterlogging"]
    low_share = sum(areas[d.subdistrict].low_lying for d in wl) / len(wl)
    low_area = sum(a.radius_m**2 for a in areas.values() if a.low_lying) / sum(
        a.radius_m**2 for a in areas.values()
    )
    assert low_share > 2 * low_area  # gauges go where water collects
    min_lon, min_lat, max_lon, max_lat = DISTRICT.bbox
    margin = 0.01
    for d in fleet:
        assert min_lat - margin < d.lat < max_lat + margin
        assert min_lon - margin < d.lon < max_lon + margin
    gateways = Counter(d.gateway_id for d in fleet if d.gateway_id)
    assert gateways and max(gateways.values()) <= 32
    for gw in gateways:  # a gateway serves one subdistrict
        assert len({d.subdistrict for d in fleet if d.gateway_id == gw}) == 1


def test_values_stay_in_the_valid_range_and_are_deterministic() -> None:
    fleet = build_fleet(CATALOGUE, DISTRICT, 600, seed=5)
    weather = Weather.generate(
        5, _local(0), _local(24 * 14), City(fleet, CATALOGUE, DISTRICT).centre
    )
    city = City(fleet, CATALOGUE, DISTRICT, seed=5, weather=weather)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(fleet), 20_000)
    t = _local(0) + rng.uniform(0, 14 * 24 * HOUR, 20_000)
    readings = city.readings(idx.tolist(), t.tolist())
    assert readings == city.readings(idx.tolist(), t.tolist())
    for i, values in zip(idx.tolist(), readings, strict=True):
        sensor_type = CATALOGUE.get(fleet[i].type)
        assert values.keys() == sensor_type.quantities.keys()
        for key, value in values.items():
            q = sensor_type.quantities[key]
            if q.kind in ("float", "int"):
                assert q.min is not None and q.max is not None
                assert q.min <= value <= q.max, (fleet[i].id, key, value)
                assert isinstance(value, int if q.kind == "int" else float)
            elif q.kind == "bool":
                assert isinstance(value, bool)
            else:
                assert q.allowed is None or value in q.allowed


@pytest.mark.parametrize(("type_id", "quantity"), [("traffic_flow", "count"), ("noise", "laeq")])
def test_rush_hour_is_busier_than_the_night(type_id: str, quantity: str) -> None:
    fleet = build_fleet(CATALOGUE, DISTRICT, 400, seed=1, types=[type_id])
    city = City(fleet, CATALOGUE, DISTRICT, seed=1)
    idx = np.arange(len(fleet))

    def mean_at(hour: float) -> float:
        return float(
            city.type_values(type_id, idx, np.full(len(idx), _local(hour)))[quantity].mean()
        )

    lo, hi = CATALOGUE.get(type_id).quantities[quantity].typical or (0, 1)
    night = mean_at(3.5)
    assert mean_at(8.3) - night > 0.3 * (hi - lo)
    assert mean_at(18) - night > 0.3 * (hi - lo)
    assert mean_at(8.3) > mean_at(13)  # rush hour beats midday


def test_a_rainstorm_floods_low_lying_roads_then_drains() -> None:
    fleet = build_fleet(CATALOGUE, DISTRICT, 300, seed=2, types=["waterlogging"])
    lat, lon = (
        (DISTRICT.bbox[1] + DISTRICT.bbox[3]) / 2,
        (DISTRICT.bbox[0] + DISTRICT.bbox[2]) / 2,
    )
    storm = Episode("rain", _local(10), _local(11.5), 50.0, lat, lon, 20_000)
    city = City(fleet, CATALOGUE, DISTRICT, seed=2, weather=Weather((storm,)))
    idx = np.arange(len(fleet))
    low = city.low_lying

    def depth(hour: float) -> np.ndarray:
        return city.type_values("waterlogging", idx, np.full(len(idx), _local(hour)))["depth"]

    before, peak, later = depth(9.5), depth(11.5), depth(16)
    assert before[low].mean() < 2
    assert peak[low].mean() > 10 * max(before[low].mean(), 0.5)
    assert peak[low].mean() > 3 * peak[~low].mean()  # low-lying areas flood, others barely
    assert later[low].mean() < peak[low].mean() / 5  # it drains


def test_a_pollution_episode_raises_pm25_across_the_district_together() -> None:
    fleet = build_fleet(CATALOGUE, DISTRICT, 300, seed=4, types=["air_quality"])
    centre = City(fleet, CATALOGUE, DISTRICT).centre
    episode = Episode("pollution", _local(0), _local(48), 120.0, *centre, 6_000)
    clear = City(fleet, CATALOGUE, DISTRICT, seed=4)
    smog = City(fleet, CATALOGUE, DISTRICT, seed=4, weather=Weather((episode,)))
    idx = np.arange(len(fleet))
    t = np.full(len(idx), _local(24))
    base = clear.type_values("air_quality", idx, t)["pm25"]
    high = smog.type_values("air_quality", idx, t)["pm25"]
    excess = high - base
    assert excess.min() > 40  # everyone sees it
    # spatially correlated: the excess falls with distance from the plume's centre
    d = np.hypot(clear.lat - centre[0], clear.lon - centre[1])
    assert np.corrcoef(d, excess)[0, 1] < -0.5
