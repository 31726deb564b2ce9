"""Deterministic readings for a fleet, as MQTT messages: what fault tests and benchmarks
publish when they need many known readings with sequence numbers (not the simulated
city's live behaviour, which is ``gateway_sim.publisher``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_sim.signals import City
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.registry.store import DeviceInfo
from sensornet.topics import device_topic

SYNTHETIC_GATEWAY = "GW-BENCH"  # the gateway whose packs carry every sensor's readings


@dataclass(frozen=True)
class Reading:
    device: DeviceInfo
    seq: int
    ts_ms: int
    values: dict[str, float | int | bool | str]


def make_readings(fleet: list[DeviceInfo], n: int) -> Iterator[Reading]:
    """N readings round-robin over the fleet, each sensor 100 ms apart, ending now."""
    per_sensor = -(-n // len(fleet))
    base_ms = int(time.time() * 1000) - per_sensor * 100 - 60_000
    city = City(fleet, load_catalogue(), load_district())
    templates = city.readings(range(len(fleet)), [base_ms / 1000] * len(fleet))
    for i in range(n):
        k, j = divmod(i, len(fleet))
        yield Reading(fleet[j], k, base_ms + k * 100, templates[j])


def messages(prefix: str, readings: Iterator[Reading], pack: int) -> Iterator[tuple[bytes, bytes]]:
    if pack <= 1:
        for r in readings:
            topic = device_topic(prefix, r.device.id, "readings").encode()
            yield topic, orjson.dumps({"ts": r.ts_ms, "seq": r.seq, **r.values})
        return
    gateway_topic = device_topic(prefix, SYNTHETIC_GATEWAY, "pack").encode()
    batch: list[dict[str, Any]] = []
    for r in readings:
        batch.append({"sensor": r.device.id, "ts": r.ts_ms, "seq": r.seq, **r.values})
        if len(batch) == pack:
            yield gateway_topic, orjson.dumps({"gw": SYNTHETIC_GATEWAY, "readings": batch})
            batch = []
    if batch:
        yield gateway_topic, orjson.dumps({"gw": SYNTHETIC_GATEWAY, "readings": batch})
