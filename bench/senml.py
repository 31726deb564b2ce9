"""``sensornet bench senml``: CPU per reading of the ingest pipeline (decode, validate, line
protocol; no broker, no InfluxDB) for the same readings sent as the native flat object
(fast lane: the ceiling), as SenML JSON and as SenML CBOR named by registered URNs, each
on its device's own topic. Process CPU time, best of a few rounds."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from gateway_sim.payloads import Item, flat, senml_device_pack, senml_name_for
from gateway_sim.synthetic import make_readings
from ingest.pipeline import Pipeline
from sensornet.catalogue import load_catalogue
from sensornet.mqtt_wire import InboundMessage
from sensornet.topics import device_topic
from wiring.parts import default_fleet

PREFIX = "city/v1"
BATCH = 5000


def _us_per_reading(
    pipeline: Pipeline, batch: list[InboundMessage], now: int, rounds: int
) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        stored = 0
        for i in range(0, len(batch), BATCH):
            result = pipeline.process(
                batch[i : i + BATCH], now, 1
            )  # a registry version, as the ingester passes
            stored += len(result.stored)
            if result.rejects:
                raise RuntimeError(
                    f"refused: {result.rejects[0].reason} {result.rejects[0].detail}"
                )
        best = min(best, time.process_time() - started)
        if stored != len(batch):
            raise RuntimeError(f"pipeline stored {stored} of {len(batch)}")
    return best / len(batch) * 1e6


def run(readings: int, rounds: int) -> dict[str, Any]:
    fleet = [replace(d, senml_name=senml_name_for(d.id)) for d in default_fleet(1000)
             if not d.gateway_id]  # fmt: skip
    devices = {d.id: d for d in fleet}
    names = {senml_name_for(d.id): d for d in fleet}
    pipeline = Pipeline(
        load_catalogue(), devices.get, PREFIX,
        resolve=lambda scheme, key: names.get(key) if scheme == "senml_name" else None,
    )  # fmt: skip
    now = time.time_ns()
    items = [Item(r.device.id, r.ts_ms, r.seq, r.values) for r in make_readings(fleet, readings)]

    def batch(encode: Any) -> list[InboundMessage]:
        return [
            InboundMessage(device_topic(PREFIX, i.sensor_id, "readings"), encode(i), 1, None, now)
            for i in items
        ]

    native = _us_per_reading(pipeline, batch(flat), now, rounds)
    json_us = _us_per_reading(
        pipeline, batch(lambda i: senml_device_pack(i, senml_name_for(i.sensor_id), False)),
        now, rounds,
    )  # fmt: skip
    cbor_us = _us_per_reading(
        pipeline, batch(lambda i: senml_device_pack(i, senml_name_for(i.sensor_id), True)),
        now, rounds,
    )  # fmt: skip
    return {
        "bench": "senml", "readings": len(items), "native_fast_us": round(native, 2),
        "senml_json_us": round(json_us, 2), "senml_cbor_us": round(cbor_us, 2),
        "senml_json_ratio": round(json_us / native, 1),
        "senml_cbor_ratio": round(cbor_us / native, 1),
    }  # fmt: skip
