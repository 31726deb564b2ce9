"""The simulator as a LoRaWAN network server: each registered LoRaWAN sensor (one with a
DevEUI) reports every ``interval_s`` and its uplink is published on a network server's
broker as ChirpStack v4 or The Things Stack v3 would publish it (``gateway_sim.lorawan``),
decoded by the "network server" or as raw bytes of the type's codec. The frame counter
counts from 0 per device, as after a join, and is the reading's ``seq``.

Every uplink is in the ground truth (``gateway_sim.faults.GroundTruth``) as a native
device's reading is, so ``gateway_sim.report.account`` gives the same exact report: sent,
stored, refused by reason, missing, and lost on the device (an uplink whose PUBACK the
NS's broker never sent: MQTT 3.1.1 section 4.6 has the broker acknowledge QoS 1 messages in
the order received, so the first ``acked`` of a round are the acknowledged ones). Faults
are those of a reading, as inside a gateway's pack (``LORAWAN_FAULTS``): a skipped
``fCnt``, the same uplink published twice (the NS retrying), the NS's receipt time an
hour ahead, a decoded value out of range.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway_sim.faults import (
    PACK_FAULTS,
    SKEW_S,
    FaultPlan,
    GroundTruth,
    Injected,
    out_of_range,
)
from gateway_sim.lorawan import Network, encode_values, uplink
from gateway_sim.payloads import Item
from gateway_sim.signals import City
from sensornet.bulk_publisher import BulkPublisher
from sensornet.catalogue import Catalogue
from sensornet.district import District
from sensornet.errors import ServiceError
from sensornet.influx import InfluxClient
from sensornet.lineprotocol import FieldValue
from sensornet.lorawan.keymap import KeyMap, load_keymap
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceInfo

#: the faults an uplink can carry (reading-level: the NS's envelope itself is well-formed)
LORAWAN_FAULTS = tuple(sorted(PACK_FAULTS))


@dataclass(frozen=True, slots=True)
class SentUplink:
    sensor_id: str
    f_cnt: int
    received_ns: int


@dataclass(frozen=True, slots=True)
class _Message:
    topic: bytes
    body: bytes
    carries: tuple[str, int] | None  # the reading a first copy stands for


class _Uplinks:
    """One round's uplinks as the NS publishes them, with faults and ground truth."""

    def __init__(self, network: Network, catalogue: Catalogue, keys: KeyMap, raw: bool,
                 faults: FaultPlan, truth: GroundTruth) -> None:  # fmt: skip
        self.network, self.catalogue, self.keys, self.raw = network, catalogue, keys, raw
        self.faults, self.truth = faults, truth

    def of(self, device: DeviceInfo, f_cnt: int, received_ns: int,
           values: dict[str, FieldValue]) -> tuple[list[_Message], SentUplink | None]:  # fmt: skip
        item = Item(device.id, received_ns // 1_000_000, f_cnt, values)
        kind = self.faults.pick(device.id, f_cnt, in_pack=True)
        copies, decoded_only = 1, False
        if kind is None:
            self.truth.clean(device.id)
        else:
            expected = "stored"
            if kind == "dropout":
                expected = "not_sent"
            elif kind == "duplicate":
                expected, copies = "stored_once", 2
            elif kind == "clock_skew":
                expected, received_ns = "ts_future", received_ns + SKEW_S * 10**9
            elif kind == "out_of_range":
                bad, expected = out_of_range(item, self.catalogue, device.type)
                values, decoded_only = dict(bad.values), True  # bytes would clamp it
            injected = Injected(None, device.id, expected, device.id, f_cnt, copies)
            self.truth.fault(kind, item, injected, f_cnt=f_cnt)
            if expected == "not_sent":
                return [], None
        payload: dict[str, Any] = {"decoded": values}
        sensor_type = self.catalogue.types[device.type]
        if self.raw and sensor_type.codec is not None and not decoded_only:
            payload = {"data": encode_values(sensor_type, values, self.keys)}
        topic, body = uplink(self.network, device.dev_eui or "", device.id, f_cnt,
                             received_ns, **payload)  # fmt: skip
        messages = [
            _Message(topic.encode(), body, None if copy else (device.id, f_cnt))
            for copy in range(copies)  # the NS retrying: the same uplink, byte for byte
        ]
        return messages, SentUplink(device.id, f_cnt, received_ns)


async def publish_rounds(
    *, host: str, port: int, username: str, password: str, network: Network,
    fleet: Sequence[DeviceInfo], catalogue: Catalogue, district: District, rounds: int,
    interval_s: float, raw: bool = False, tls: MqttTls | None = None,
    progress: Callable[[int], None] | None = None, faults: FaultPlan | None = None,
    truth: GroundTruth | None = None,
) -> list[SentUplink]:  # fmt: skip
    """``rounds`` uplinks of every device of ``fleet`` with a DevEUI, one connection per
    round; returns the log of uplinks sent. ``truth`` (when given) gets every one, and
    those the broker did not acknowledge (it refused or dropped the connection) as lost on
    the device; without ``truth`` such a round raises."""
    devices = [d for d in fleet if d.dev_eui]
    if not devices:
        raise ValueError("no sensor of the fleet has a DevEUI: register LoRaWAN sensors first")
    city = City(devices, catalogue, district)
    book = truth if truth is not None else GroundTruth()
    uplinks = _Uplinks(network, catalogue, load_keymap(), raw, faults or FaultPlan(), book)
    sent: list[SentUplink] = []
    publisher = BulkPublisher(host, port, f"sim-ns-{network}", username, password, tls=tls)
    for round_index in range(rounds):
        started = time.monotonic()
        now_ns = time.time_ns()
        values = city.readings(range(len(devices)), [now_ns / 1e9] * len(devices))
        batch: list[_Message] = []
        for i, (device, reading) in enumerate(zip(devices, values, strict=True)):
            received = now_ns + i * 1000  # distinct per device, as a real NS's clock
            messages, logged = uplinks.of(device, round_index, received, dict(reading))
            batch += messages
            if logged is not None:
                sent.append(logged)
        before = publisher.acked
        try:
            await publisher.publish_all((m.topic, m.body) for m in batch)
        except (OSError, EOFError, ServiceError):
            if truth is None:
                raise
        acked = publisher.acked - before  # in order (MQTT 3.1.1 4.6): the first ``acked``
        for m in batch[acked:]:
            if m.carries is not None:
                book.never_acknowledged(*m.carries)
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
