"""``sensornet bench pipeline``: CPU per message of the ingest pipeline alone (no broker,
no InfluxDB), the fast lane against the general path on the same messages (native single
readings and packs; LoRaWAN envelopes of both networks, decoded or raw, on the envelope
lane), plus the MQTT frame parsing, with the garbage collector tuned as in ``sensornet
ingest``. Process CPU time, best of a few rounds, so other load on the machine disturbs it
less than wall time."""

from __future__ import annotations

import gc
import time
from dataclasses import replace
from typing import Any

from gateway_sim.lorawan import Network, dev_eui_for, envelopes
from gateway_sim.synthetic import SYNTHETIC_GATEWAY, make_readings, messages
from ingest.pipeline import Pipeline
from sensornet.catalogue import load_catalogue
from sensornet.mqtt_wire import FrameReader, InboundMessage, publish_packet
from wiring.parts import default_fleet, tune_gc_for_throughput

PREFIX = "city/v1"
BATCH = 5000


def _pipeline_us(fleet: list[Any], n: int, pack: int, fast: bool, rounds: int) -> float:
    now = time.time_ns()
    batch = [
        InboundMessage(topic.decode(), payload, 1, None, now)
        for topic, payload in messages(PREFIX, make_readings(fleet, n), pack)
    ]
    return _best_us(fleet, batch, n, fast, rounds, now)


def _envelope_us(
    fleet: list[Any], n: int, network: Network, raw: bool, fast: bool, rounds: int
) -> float:
    """Network servers' uplink envelopes (one reading and its device_health line each):
    the envelope lane (``ingest/envelope_lane.py``) or the general path."""
    now = time.time_ns()
    batch = [
        InboundMessage(topic.decode(), payload, 1, None, now, network)
        for topic, payload in envelopes(network, make_readings(fleet, n), raw=raw)
    ]
    return _best_us(fleet, batch, n, fast, rounds, now)


def _best_us(
    fleet: list[Any], batch: list[InboundMessage], n: int, fast: bool, rounds: int, now: int
) -> float:
    devices = {d.id: d for d in fleet}
    by_eui = {d.dev_eui: d for d in fleet if d.dev_eui}

    def resolve(scheme: str, key: str) -> Any:
        return by_eui.get(key) if scheme == "deveui" else devices.get(key)

    pipeline = Pipeline(load_catalogue(), devices.get, PREFIX, use_fast_lane=fast, resolve=resolve)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        stored = 0
        for i in range(0, len(batch), BATCH):
            result = pipeline.process(batch[i : i + BATCH], now)
            stored += len(result.stored)
        best = min(best, time.process_time() - started)
        if stored != n:
            raise RuntimeError(f"pipeline stored {stored} of {n}")
    return best / n * 1e6


def _frames_us(fleet: list[Any], n: int, rounds: int) -> float:
    """PUBLISH packets as Mosquitto sends them (QoS 1, no properties), read 64 KiB at a time."""
    data = b"".join(
        publish_packet(topic, payload, 1, properties=b"")
        for topic, payload in messages(PREFIX, make_readings(fleet, n), 1)
    )
    best = float("inf")
    got: list[InboundMessage] = []
    frames = FrameReader(lambda msgs, size: got.extend(msgs), lambda cmd, body: None)
    for _ in range(rounds):
        got.clear()
        started = time.process_time()
        buffer = b""
        for at in range(0, len(data), 65536):
            buffer += data[at : at + 65536]
            buffer = buffer[frames.read(buffer, None) :]
        best = min(best, time.process_time() - started)
        if len(got) != n:
            raise RuntimeError(f"parsed {len(got)} of {n} packets")
    return best / n * 1e6


def run(readings: int, rounds: int) -> dict[str, Any]:
    thresholds = gc.get_threshold()
    tune_gc_for_throughput()  # as `sensornet ingest` runs
    try:
        return _run(readings, rounds)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _run(readings: int, rounds: int) -> dict[str, Any]:
    fleet = default_fleet(1000)
    packed = [replace(d, gateway_id=SYNTHETIC_GATEWAY) for d in fleet]
    lorawan = [replace(d, dev_eui=dev_eui_for(d.id)) for d in fleet]
    figures = {
        "single_fast_us": _pipeline_us(fleet, readings, 1, True, rounds),
        "single_general_us": _pipeline_us(fleet, readings, 1, False, rounds),
        "pack100_fast_us_per_reading": _pipeline_us(packed, readings, 100, True, rounds),
        "pack100_general_us_per_reading": _pipeline_us(packed, readings, 100, False, rounds),
        "frames_us": _frames_us(fleet, readings, rounds),
    }
    networks: tuple[Network, ...] = ("chirpstack", "tts")
    for network in networks:
        for raw in (False, True):
            name = f"{network}{'_raw' if raw else ''}"
            for fast in (True, False):
                us = _envelope_us(lorawan, readings, network, raw, fast, rounds)
                figures[f"{name}_{'lane' if fast else 'general'}_us"] = us
    result: dict[str, Any] = {"bench": "pipeline", "readings": readings}
    result |= {k: round(v, 2) for k, v in figures.items()}
    result["single_speedup"] = round(figures["single_general_us"] / figures["single_fast_us"], 1)
    result["pack_speedup"] = round(
        figures["pack100_general_us_per_reading"] / figures["pack100_fast_us_per_reading"], 1
    )
    result["chirpstack_speedup"] = round(
        figures["chirpstack_general_us"] / figures["chirpstack_lane_us"], 1
    )
    return result
