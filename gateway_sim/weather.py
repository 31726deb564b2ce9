"""Weather episodes, deterministic by seed: rainstorms (rain rate, then ponding that drains)
and pollution episodes (PM2.5 excess over the district, spatially correlated).

All functions are vectorised over arrays of times and positions of equal length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_DAY_S = 86_400.0
_M_PER_DEG = 111_320.0
DRAIN_TAU_S = 2_700.0  # how fast a low spot drains once the rain stops (e-folding)


@dataclass(frozen=True, slots=True)
class Episode:
    kind: str  # "rain" (peak in mm/h) or "pollution" (peak PM2.5 excess in µg/m³)
    start_s: float
    end_s: float
    peak: float
    lat: float
    lon: float
    radius_m: float


def _envelope(t: np.ndarray, e: Episode) -> np.ndarray:
    """0..1: ramps up over the first 15 % and down over the last 30 % of the episode."""
    span = e.end_s - e.start_s
    x = (t - e.start_s) / span
    up = np.clip(x / 0.15, 0, 1)
    down = np.clip((1 - x) / 0.3, 0, 1)
    return np.where((x >= 0) & (x <= 1), np.minimum(up, down), 0.0)


def _distance_m(lat: np.ndarray, lon: np.ndarray, e: Episode) -> np.ndarray:
    dy = (lat - e.lat) * _M_PER_DEG
    dx = (lon - e.lon) * _M_PER_DEG * math.cos(math.radians(e.lat))
    return np.hypot(dx, dy)


@dataclass(frozen=True)
class Weather:
    episodes: tuple[Episode, ...]

    @classmethod
    def generate(
        cls,
        seed: int,
        start_s: float,
        end_s: float,
        centre: tuple[float, float],
        kickoff_s: float | None = None,
    ) -> Weather:
        """Storms on ~30 % of days, pollution episodes on ~15 %. ``kickoff_s`` forces a
        rainstorm to begin then, so a live demo shows one within minutes."""
        rng = np.random.default_rng([seed, 7])
        lat0, lon0 = centre
        episodes: list[Episode] = []
        day0 = math.floor(start_s / _DAY_S) - 2  # episodes from before the start still drain
        for day in range(day0, math.ceil(end_s / _DAY_S) + 1):
            day_rng = np.random.default_rng([seed, 7, day])
            if day_rng.random() < 0.3:
                begin = day * _DAY_S + day_rng.uniform(0, _DAY_S)
                episodes.append(
                    Episode(
                        "rain",
                        begin,
                        begin + day_rng.uniform(3_600, 3 * 3_600),
                        day_rng.uniform(15, 60),
                        lat0 + day_rng.normal(0, 0.02),
                        lon0 + day_rng.normal(0, 0.02),
                        day_rng.uniform(3_000, 6_000),
                    )
                )
            if day_rng.random() < 0.15:
                begin = day * _DAY_S + day_rng.uniform(0, _DAY_S)
                episodes.append(
                    Episode(
                        "pollution",
                        begin,
                        begin + day_rng.uniform(12 * 3_600, 48 * 3_600),
                        day_rng.uniform(60, 160),
                        lat0 + day_rng.normal(0, 0.03),
                        lon0 + day_rng.normal(0, 0.03),
                        day_rng.uniform(4_000, 8_000),
                    )
                )
        if kickoff_s is not None:
            episodes.append(Episode("rain", kickoff_s, kickoff_s + 5_400, 45.0, lat0, lon0, 6_000))
        del rng
        return cls(tuple(sorted(episodes, key=lambda e: e.start_s)))

    def rain(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Rain rate (mm/h) at each place and time."""
        out = np.zeros(len(t))
        for e in self.episodes:
            if e.kind == "rain":
                d = _distance_m(lat, lon, e)
                out += e.peak * _envelope(t, e) * np.exp(-((d / e.radius_m) ** 2) / 2)
        return out

    def ponding(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Water held in a low spot (mm): rain accumulates and drains with DRAIN_TAU_S.
        Closed form for a storm taken at its mean rate, so any time is cheap to evaluate."""
        out = np.zeros(len(t))
        tau_h = DRAIN_TAU_S / 3_600
        for e in self.episodes:
            if e.kind != "rain":
                continue
            d = _distance_m(lat, lon, e)
            rate = 0.6 * e.peak * np.exp(-((d / e.radius_m) ** 2) / 2)
            wet = np.clip(t, e.start_s, e.end_s) - e.start_s
            after = np.clip(t - e.end_s, 0, None)
            held = rate * tau_h * (1 - np.exp(-wet / DRAIN_TAU_S)) * np.exp(-after / DRAIN_TAU_S)
            out += np.where(t > e.start_s, held, 0.0)
        return out

    def pollution(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """PM2.5 excess (µg/m³): a broad plume, so nearby sensors rise together."""
        out = np.zeros(len(t))
        for e in self.episodes:
            if e.kind == "pollution":
                d = _distance_m(lat, lon, e)
                spatial = 0.5 + 0.5 * np.exp(-((d / e.radius_m) ** 2) / 2)
                out += e.peak * _envelope(t, e) * spatial
        return out
