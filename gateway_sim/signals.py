"""The simulated city's signals, vectorised with numpy and deterministic by seed.

A value is a pure function of (seed, sensor id, quantity, time): a daily and weekly cycle
inside the catalogue's typical range (rush hours, night dips), a per-sensor bias and
drift, sensor noise, and the weather episodes of ``gateway_sim.weather``. It is always
clipped into the catalogue's valid [min, max]; only injected faults leave it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from gateway_sim.profiles import Profiles, QuantityProfile, load_profiles
from gateway_sim.weather import Weather
from sensornet.catalogue import Catalogue, Quantity
from sensornet.district import District
from sensornet.lineprotocol import FieldValue
from sensornet.registry.store import DeviceInfo

_DAY_S = 86_400.0
_U64 = np.uint64
_RECALIBRATE_DAYS = 90  # drift grows until the quarterly field calibration
_OFF_READS_ZERO = frozenset({"zero", "night"})


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        out: np.ndarray = z ^ (z >> _U64(31))
        return out


def hash_keys(*keys: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash of integer keys, element-wise (counter-based randomness)."""
    h = np.zeros(1, dtype=np.uint64)
    for key in keys:
        arr = np.asarray(key).astype(np.int64).astype(np.uint64)
        h = _splitmix(h ^ arr)
    return h


def uniform(h: np.ndarray) -> np.ndarray:
    return (h >> _U64(11)).astype(np.float64) * 2.0**-53


def normal(h: np.ndarray) -> np.ndarray:
    u1 = np.maximum(uniform(h), 1e-300)
    u2 = uniform(_splitmix(h))
    out: np.ndarray = np.sqrt(-2 * np.log(u1)) * np.cos(2 * math.pi * u2)
    return out


def _bump(h: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    d = (h - mu + 12) % 24 - 12  # circular distance in hours
    return np.exp(-(d**2) / (2 * sigma**2))


def cycle(name: str, t: np.ndarray, utc_offset_h: float) -> np.ndarray:
    """Activity 0..1 of a daily/weekly shape at times ``t`` (epoch s)."""
    local = t + utc_offset_h * 3600
    h = (local / 3600) % 24
    weekday = ((np.floor(local / _DAY_S) + 3) % 7) < 5  # 1970-01-01 was a Thursday
    if name == "traffic":
        rush = np.maximum(_bump(h, 8.3, 1.0), _bump(h, 18.0, 1.3))
        act = 0.05 + 0.35 * _bump(h, 13.5, 4.0) + np.where(weekday, 0.6, 0.25) * rush
    elif name == "noise":
        act = cycle("traffic", t, utc_offset_h) * 0.75 + 0.15
    elif name == "air":
        act = 0.3 + 0.35 * _bump(h, 8.5, 1.5) + 0.3 * _bump(h, 21.5, 3.0) - 0.15 * _bump(h, 15, 3)
    elif name == "ozone":
        act = 0.1 + 0.8 * _bump(h, 14.5, 2.5)
    elif name == "temperature":
        doy = (local / _DAY_S) % 365.25
        act = (
            0.5
            + 0.12 * np.cos(2 * math.pi * (h - 14.5) / 24)
            + 0.3 * np.cos(2 * math.pi * (doy - 205) / 365.25)
        )
    elif name == "humidity":
        act = 0.55 - 0.25 * np.cos(2 * math.pi * (h - 14.5) / 24)
    elif name == "night":
        act = ((h >= 18) | (h < 6)).astype(np.float64)
    elif name == "fill":
        act = 0.05 + 0.9 * ((h - 6) % 24) / 24
    else:
        act = np.full(len(t), {"calm": 0.1, "mid": 0.5, "zero": 0.0}.get(name, 0.25))
    clipped: np.ndarray = np.clip(act, 0.0, 1.0)
    return clipped


class City:
    """Signal generator for one fleet; ``values`` is vectorised over (sensor, time) pairs."""

    def __init__(
        self,
        fleet: Sequence[DeviceInfo],
        catalogue: Catalogue,
        district: District,
        *,
        seed: int = 151,
        weather: Weather | None = None,
        epoch_s: float = 1_767_225_600.0,  # 2026-01-01: the fleet's installation day
        profiles: Profiles | None = None,
    ) -> None:
        self.fleet = list(fleet)
        self.catalogue = catalogue
        self.seed = seed
        self.profiles = profiles or load_profiles()
        self.epoch_s = epoch_s
        lon_c = (district.bbox[0] + district.bbox[2]) / 2
        lat_c = (district.bbox[1] + district.bbox[3]) / 2
        self.centre = (lat_c, lon_c)
        self.utc_offset_h = round(lon_c / 15)  # solar time is what cycles follow
        self.weather = weather or Weather(())
        self.index = {d.id: i for i, d in enumerate(self.fleet)}
        self.lat = np.array([d.lat for d in self.fleet], dtype=float)
        self.lon = np.array([d.lon for d in self.fleet], dtype=float)
        self.key = np.array([zlib.crc32(d.id.encode()) for d in self.fleet], dtype=np.int64)
        low = {s.id: s.low_lying for s in district.subdistricts.values()}
        self.low_lying = np.array([low.get(d.subdistrict, False) for d in self.fleet])

    def _numeric(
        self, q: Quantity, p: QuantityProfile, qk: int, idx: np.ndarray, t: np.ndarray
    ) -> np.ndarray:
        lo, hi = q.typical or (q.min or 0.0, q.max or 1.0)
        span = (hi - lo) or ((q.max or 1.0) - (q.min or 0.0)) * 0.01
        act = cycle(p.cycle, t, self.utc_offset_h)
        if p.invert:
            act = 1 - act
        key = self.key[idx]
        bias = 0.05 * span * normal(hash_keys(self.seed, key, qk, 1))
        drift = p.drift * span * normal(hash_keys(self.seed, key, qk, 2))
        days = ((t - self.epoch_s) / _DAY_S) % _RECALIBRATE_DAYS
        noise = p.noise * span * normal(hash_keys(self.seed, key, qk, np.round(t * 1000)))
        error = bias + drift * days + noise
        if p.cycle in _OFF_READS_ZERO:
            error = error * act  # a switched-off device reads exactly nothing
        value = lo + span * act + error
        lat, lon = self.lat[idx], self.lon[idx]
        if p.rain or p.ponding:
            value += p.rain * self.weather.rain(t, lat, lon)
        if p.ponding:
            gain = np.where(self.low_lying[idx], 1.0, 0.06) * (0.7 + 0.6 * uniform(hash_keys(key)))
            value += p.ponding * gain * self.weather.ponding(t, lat, lon)
        if p.pollution:
            value += p.pollution * self.weather.pollution(t, lat, lon)
        value = np.clip(value, q.min, q.max)
        if q.kind == "int":
            return np.round(value)
        return np.round(value, 2)

    def type_values(self, type_id: str, idx: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays of values per quantity for sensors ``idx`` (all of ``type_id``) at ``t``."""
        out: dict[str, np.ndarray] = {}
        sensor_type = self.catalogue.get(type_id)
        for qk, q in enumerate(sensor_type.quantities.values()):
            p = self.profiles.quantity(type_id, q.id)
            if q.kind in ("float", "int"):
                out[q.id] = self._numeric(q, p, qk, idx, t)
            elif q.kind == "bool":
                prob = p.p_true * (cycle(p.cycle, t, self.utc_offset_h) if p.cycle != "flat" else 1)
                u = uniform(hash_keys(self.seed, self.key[idx], qk, np.round(t * 1000)))
                out[q.id] = u < prob
            else:
                out[q.id] = np.full(len(idx), (q.allowed or ("ok",))[0], dtype=object)
        return out

    def readings(self, idx: Sequence[int], t: Sequence[float]) -> list[dict[str, FieldValue]]:
        """One values dict per (sensor, time) pair, in order; vectorised per type."""
        idx_arr = np.asarray(idx, dtype=np.int64)
        t_arr = np.asarray(t, dtype=np.float64)
        out: list[dict[str, FieldValue]] = [{} for _ in range(len(idx_arr))]
        types = np.array([self.fleet[i].type for i in idx_arr], dtype=object)
        for type_id in dict.fromkeys(types.tolist()):
            rows = np.nonzero(types == type_id)[0]
            values = self.type_values(type_id, idx_arr[rows], t_arr[rows])
            kinds = {q.id: q.kind for q in self.catalogue.get(type_id).quantities.values()}
            columns = {k: _as_python(v, kinds[k]) for k, v in values.items()}
            for j, row in enumerate(rows.tolist()):
                out[row] = {k: col[j] for k, col in columns.items()}
        return out


def _as_python(values: np.ndarray, kind: str) -> list[FieldValue]:
    if kind == "int":
        return [int(v) for v in values.tolist()]
    if kind == "float":
        return [float(v) for v in values.tolist()]
    if kind == "bool":
        return [bool(v) for v in values.tolist()]
    return [str(v) for v in values.tolist()]
