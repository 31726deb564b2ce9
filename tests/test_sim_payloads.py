"""What simulated devices send decodes, through the platform's own codec, to exactly the
readings they meant; and a fleet can come from the registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway_sim.fleet import build_fleet, fleet_from_registry
from gateway_sim.payloads import Item, flat, gateway_pack, senml_cbor_pack, senml_pack
from sensornet.catalogue import load_catalogue
from sensornet.codec import decode_payload
from sensornet.district import load_district
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.senml_resolve import SenmlContext

ITEMS = [
    Item("AQ-1", 1_795_580_000_123, 7, {"pm25": 12.5, "pm10": 40.0}),
    Item("SL-2", 1_795_580_000_456, 0, {"power": 0.0, "on": False, "mode": "auto"}),
    Item("TF-3", 1_795_580_001_000, 3, {"count": 42, "mean_speed": 31.5}),
]


def test_flat_payload_round_trips() -> None:
    for item in ITEMS:
        [reading] = decode_payload(flat(item)).readings
        assert reading.values == item.values
        assert reading.seq == item.seq
        assert reading.ts_ns == item.ts_ms * 1_000_000
        assert reading.sensor_id is None  # the topic names the sensor


def test_gateway_pack_round_trips() -> None:
    decoded = decode_payload(gateway_pack("GW-1", ITEMS, 1_795_580_002_000))
    assert decoded.rejects == []
    got = {(r.sensor_id, r.seq, r.ts_ns): r.values for r in decoded.readings}
    assert got == {(i.sensor_id, i.seq, i.ts_ms * 1_000_000): i.values for i in ITEMS}


@pytest.mark.parametrize("encode", [senml_pack, senml_cbor_pack])
def test_senml_pack_round_trips_with_seq(encode: Callable[[list[Item]], bytes]) -> None:
    types = {"AQ-1": "air_quality", "SL-2": "street_light", "TF-3": "traffic_flow"}
    devices = {i: DeviceInfo(i, t, "jingansi", 31.2, 121.4, "active") for i, t in types.items()}
    context = SenmlContext(load_catalogue(), devices.get)
    decoded = decode_payload(encode(ITEMS), senml=context)
    assert decoded.rejects == []
    assert len(decoded.readings) == len(ITEMS)
    for reading, item in zip(decoded.readings, ITEMS, strict=True):
        assert reading.sensor_id == item.sensor_id
        assert reading.values == item.values
        assert reading.seq == item.seq
        assert reading.ts_ns == item.ts_ms * 1_000_000


async def test_fleet_from_the_registry_keeps_reporting_sensors(tmp_path: Path) -> None:
    fleet = build_fleet(load_catalogue(), load_district(), 30, seed=2)
    retired = dataclasses.replace(fleet[0], status="retired")
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    async with open_registry(url) as engine:
        await upsert_devices(engine, [retired, *fleet[1:]])
    got = await fleet_from_registry(url)
    assert got == sorted(fleet[1:], key=lambda d: d.id)
