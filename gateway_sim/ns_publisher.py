"""The simulator as a LoRaWAN network server: each registered LoRaWAN sensor (one with a
DevEUI) reports every ``interval_s`` and its uplink is published on a network server's
broker as ChirpStack v4 or The Things Stack v3 would publish it (``gateway_sim.lorawan``),
decoded by the "network server" or as raw bytes of the type's codec. The frame counter
counts from 0 per device, as after a join. Every published uplink is in the returned log,
so what the platform stored can be checked against it (``stored_of``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway_sim.lorawan import Network, encode_values, uplink
from gateway_sim.signals import City
from sensornet.bulk_publisher import BulkPublisher
from sensornet.catalogue import Catalogue
from sensornet.district import District
from sensornet.influx import InfluxClient
from sensornet.lorawan.keymap import load_keymap
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceInfo


@dataclass(frozen=True, slots=True)
class SentUplink:
    sensor_id: str
    f_cnt: int
    received_ns: int


async def publish_rounds(
    *, host: str, port: int, username: str, password: str, network: Network,
    fleet: Sequence[DeviceInfo], catalogue: Catalogue, district: District, rounds: int,
    interval_s: float, raw: bool = False, tls: MqttTls | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[SentUplink]:  # fmt: skip
    """``rounds`` uplinks of every device of ``fleet`` with a DevEUI; returns the log once
    the broker acknowledged each (QoS 1)."""
    devices = [d for d in fleet if d.dev_eui]
    if not devices:
        raise ValueError("no sensor of the fleet has a DevEUI: register LoRaWAN sensors first")
    city = City(devices, catalogue, district)
    keys = load_keymap()
    sent: list[SentUplink] = []
    publisher = BulkPublisher(host, port, f"sim-ns-{network}", username, password, tls=tls)
    for round_index in range(rounds):
        started = time.monotonic()
        now_ns = time.time_ns()
        values = city.readings(range(len(devices)), [now_ns / 1e9] * len(devices))
        batch: list[tuple[bytes, bytes]] = []
        for i, (device, reading) in enumerate(zip(devices, values, strict=True)):
            received = now_ns + i * 1000  # distinct per device, as a real NS's clock
            sensor_type = catalogue.types[device.type]
            if raw and sensor_type.codec is not None:
                data = encode_values(sensor_type, reading, keys)
                topic, body = uplink(network, device.dev_eui or "", device.id, round_index,
                                     received, data=data)  # fmt: skip
            else:
                topic, body = uplink(network, device.dev_eui or "", device.id, round_index,
                                     received, decoded=reading)  # fmt: skip
            batch.append((topic.encode(), body))
            sent.append(SentUplink(device.id, round_index, received))
        acked = await publisher.publish_all(batch)
        if acked != len(batch):  # publish_all raises when the broker drops it; never short
            raise RuntimeError(f"the broker acknowledged {acked} of {len(batch)} uplinks")
        if progress is not None:
            progress(len(sent))
        if round_index + 1 < rounds:
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return sent


async def stored_of(
    influx: InfluxClient, fleet: Sequence[DeviceInfo], sent: Sequence[SentUplink]
) -> dict[str, int]:
    """Per sensor, how many of the uplinks sent are stored (by its time)."""
    types = {d.id: d.type for d in fleet}
    out: dict[str, int] = {}
    for sensor_id in sorted({s.sensor_id for s in sent}):
        mine = [s.received_ns for s in sent if s.sensor_id == sensor_id]
        measurement = types[sensor_id]  # a catalogue id: a plain name
        q = (
            f'SELECT count("seq") FROM "{measurement}" '  # noqa: S608
            'WHERE "sensor_id" = $s AND time >= $a AND time <= $b'
        )
        series = await influx.query(q, {"s": sensor_id, "a": min(mine), "b": max(mine)})
        out[sensor_id] = int(series[0]["values"][0][1]) if series else 0
    return out
