"""What an uplink says, once its device's type is known: the reading's values (catalogue
quantities) and the device's health. Pure.

The network server's own decoding wins when it ran one (``object`` /
``decoded_payload``); otherwise the sensor type's codec (``catalogue.yaml``, ``codec:``)
decodes the FRMPayload. Radio metadata (best RSSI and SNR, gateway count) and power
(battery, link margin) are health: stored in ``device_health``, never a reason to refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensornet.catalogue import SensorType
from sensornet.errors import PayloadError
from sensornet.lorawan.envelope import Uplink
from sensornet.lorawan.keymap import KeyMap


@dataclass(frozen=True, slots=True)
class UplinkValues:
    readings: dict[str, Any]
    health: dict[str, float | int | bool]


def radio_health(uplink: Uplink) -> dict[str, float | int | bool]:
    """Health the envelope itself carries, whatever the payload says."""
    health: dict[str, float | int | bool] = {"f_cnt": uplink.f_cnt}
    if uplink.gateways:
        health["gateways"] = uplink.gateways
    if uplink.rssi is not None:
        health["rssi"] = uplink.rssi
    if uplink.snr is not None:
        health["snr"] = uplink.snr
    if uplink.f_port is not None:
        health["f_port"] = uplink.f_port
    for key, value in uplink.extra.items():
        if isinstance(value, bool | int | float):
            health[key] = value
    return health


def _numeric(health: dict[str, Any]) -> dict[str, float | int | bool]:
    """Health values that are numbers; anything else is left out (health never refuses)."""
    return {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in health.items()
        if isinstance(v, bool | int | float) and v == v and v not in (float("inf"), float("-inf"))
    }


def uplink_values(uplink: Uplink, sensor_type: SensorType, keymap: KeyMap) -> UplinkValues:
    """Raises ``PayloadError``: ``no_codec`` (raw bytes and the type declares no codec:
    the dead letter keeps the envelope, and with it the bytes), ``codec_error``,
    ``no_values`` (a frame without payload). ``readings`` may come out empty (a payload of
    health only): the caller refuses the reading and still keeps the health."""
    if uplink.decoded:
        decoded: dict[str, Any] = uplink.decoded
    elif uplink.data:
        if sensor_type.codec is None:
            detail = (
                f"{len(uplink.data)} raw bytes on fPort {uplink.f_port} and type "
                f"{sensor_type.id} declares no codec; the bytes are kept in this dead letter"
            )
            raise PayloadError("no_codec", detail)
        decoded = sensor_type.codec.decode(uplink.data)
    else:
        raise PayloadError("no_values", "uplink without payload (a MAC-only frame)")
    readings, health = keymap.split(decoded, sensor_type.id, uplink.application)
    return UplinkValues(readings, _numeric(health))
