"""The simulator as a LoRaWAN network server: uplink envelopes shaped as ChirpStack v4
(MQTT integration, JSON marshaler) and The Things Stack v3 publish them, for devices
registered with a DevEUI. Pure: values in, (topic, bytes) out.

A device's payload is sent either decoded by the "network server" (``object`` /
``decoded_payload``, keys as the catalogue names them) or as raw FRMPayload bytes built
with the sensor type's own codec (catalogue ``codec:``), so the platform's decoding runs:
the inverse of ``sensornet.lorawan.layout`` and ``sensornet.lorawan.cayenne``, with
CayenneLPP channels taken from the key map (``lorawan_keys.yaml``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from gateway_sim.synthetic import Reading
from sensornet.catalogue import SensorType
from sensornet.lineprotocol import FieldValue
from sensornet.lorawan.codecs import Codec
from sensornet.lorawan.keymap import KeyMap

Network = Literal["chirpstack", "tts"]
SIM_APPLICATION = "5e1d0c7a-51a0-4f1c-9c51-0000000000a1"  # the simulated NS application
SIM_TTS_APPLICATION = "sensornet-sim"
SIM_TENANT = "jingan"
_LPP = {"digital_in": (0, 1, 1, False), "analog_in": (2, 2, 100, True),
        "luminosity": (101, 2, 1, False), "presence": (102, 1, 1, False),
        "temperature": (103, 2, 10, True), "relative_humidity": (104, 1, 2, False),
        "barometric_pressure": (115, 2, 10, False)}  # fmt: skip
_LPP_KEY = re.compile(r"^([a-z_]+)_(\d{1,3})$")


def dev_eui_for(sensor_id: str) -> str:
    """A stable DevEUI for a simulated sensor: a fixed prefix and 40 bits of its id's hash."""
    return "70B3D5" + hashlib.sha256(sensor_id.encode()).hexdigest()[:10].upper()


def _digest(dev_eui: str, f_cnt: int, received_ns: int) -> bytes:
    """The same uplink always gets the same id (a replay is recognisable as one)."""
    return hashlib.sha256(f"{dev_eui}/{f_cnt}/{received_ns}".encode()).digest()


def rfc3339(ns: int) -> str:
    seconds, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def encode_values(
    sensor_type: SensorType, values: Mapping[str, FieldValue], keymap: KeyMap,
    battery_v: float = 3.6,
) -> bytes:  # fmt: skip
    """What a device of ``sensor_type`` puts on air for ``values``: its codec's bytes."""
    codec = sensor_type.codec
    if codec is None:
        raise ValueError(f"type {sensor_type.id} declares no codec")
    return _layout(codec, {**values, "battery_v": battery_v}) if codec.layout else _lpp(
        sensor_type.id, values, keymap)  # fmt: skip


def _layout(codec: Codec, values: Mapping[str, Any]) -> bytes:
    assert codec.layout is not None
    out = bytearray()
    for f in codec.layout.fields:
        if f.key is None:
            out += bytes(f.width)
            continue
        value = values[f.key]
        raw = int(bool(value)) if f.as_bool else round(value / f.scale)
        top = 1 << (8 * f.width - (1 if f.signed else 0))
        raw = max(-top if f.signed else 0, min(top - 1, raw))
        out += raw.to_bytes(f.width, "little" if f.little_endian else "big", signed=f.signed)
    return bytes(out)


def _lpp(type_id: str, values: Mapping[str, Any], keymap: KeyMap) -> bytes:
    out = bytearray()
    for key, quantity in keymap.types.get(type_id, {}).items():
        match = _LPP_KEY.match(key)
        if (
            quantity is None
            or quantity not in values
            or match is None
            or match.group(1) not in _LPP
        ):
            continue
        code, width, scale, signed = _LPP[match.group(1)]
        raw = round(float(values[quantity]) * scale)
        top = 1 << (8 * width - (1 if signed else 0))
        raw = max(-top if signed else 0, min(top - 1, raw))
        out += bytes([int(match.group(2)), code]) + raw.to_bytes(width, "big", signed=signed)
    return bytes(out)


def _radio(rssi: float, snr: float, gateways: int) -> list[tuple[str, float, float]]:
    return [(f"0016c001f15{i:05x}", rssi - 6 * i, snr - 2 * i) for i in range(gateways)]


def chirpstack_uplink(
    dev_eui: str, name: str, f_cnt: int, received_ns: int, *, data: bytes | None = None,
    decoded: Mapping[str, Any] | None = None, f_port: int = 2, rssi: float = -87.0,
    snr: float = 7.5, gateways: int = 1, application: str = SIM_APPLICATION,
) -> tuple[str, bytes]:  # fmt: skip
    """``(topic, body)`` of a ChirpStack v4 ``up`` event: camelCase, zero values omitted
    (the proto3 JSON mapping), ``data`` base64, the NS's own ``time``."""
    body: dict[str, Any] = {
        "deduplicationId": str(uuid.UUID(bytes=_digest(dev_eui, f_cnt, received_ns)[:16])),
        "time": rfc3339(received_ns),
        "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                       "tenantName": "Sensornet simulator", "applicationId": application,
                       "applicationName": "city sensors", "deviceName": name,
                       "devEui": dev_eui.lower()},
        "devAddr": dev_eui[-8:].lower(), "dr": 5, "fPort": f_port,
        "rxInfo": [{"gatewayId": g, "uplinkId": 1 + i, "rssi": r, "snr": s,
                    "context": "AAAAAA==", "metadata": {"region_common_name": "CN470"}}
                   for i, (g, r, s) in enumerate(_radio(rssi, snr, gateways))],
        "txInfo": {"frequency": 470300000,
                   "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7,
                                           "codeRate": "CR_4_5"}}},
    }  # fmt: skip
    if f_cnt:
        body["fCnt"] = f_cnt
    if data:
        body["data"] = base64.b64encode(data).decode()
    if decoded is not None:
        body["object"] = dict(decoded)
    topic = f"application/{application}/device/{dev_eui.lower()}/event/up"
    return topic, orjson.dumps(body)


def tts_uplink(
    dev_eui: str, device_id: str, f_cnt: int, received_ns: int, *, data: bytes | None = None,
    decoded: Mapping[str, Any] | None = None, f_port: int = 2, rssi: float = -87.0,
    snr: float = 7.5, gateways: int = 1, application: str = SIM_TTS_APPLICATION,
    tenant: str = SIM_TENANT, simulated: bool = False,
) -> tuple[str, bytes]:  # fmt: skip
    """``(topic, body)`` of The Things Stack v3 ``up`` message (snake_case, empty fields
    omitted), times from the Network Server, concentrator ``timestamp`` beside them."""
    up: dict[str, Any] = {
        "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
        "f_port": f_port,
        "rx_metadata": [{"gateway_ids": {"gateway_id": f"gw-{g[-5:]}", "eui": g.upper()},
                         "time": rfc3339(received_ns - 200_000_000),
                         "timestamp": (received_ns // 1000) % 2**32, "rssi": r,
                         "channel_rssi": r, "snr": s}
                        for g, r, s in _radio(rssi, snr, gateways)],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                     "coding_rate": "4/5", "frequency": "470300000"},
        "received_at": rfc3339(received_ns),
        "consumed_airtime": "0.051456s",
    }  # fmt: skip
    if f_cnt:
        up["f_cnt"] = f_cnt
    if data:
        up["frm_payload"] = base64.b64encode(data).decode()
    if decoded is not None:
        up["decoded_payload"] = dict(decoded)
    body: dict[str, Any] = {
        "end_device_ids": {"device_id": device_id,
                           "application_ids": {"application_id": application},
                           "dev_eui": dev_eui.upper(), "dev_addr": dev_eui[-8:].upper()},
        "correlation_ids": [f"as:up:{_digest(dev_eui, f_cnt, received_ns).hex().upper()[:26]}"],
        "received_at": rfc3339(received_ns + 3_000_000),
        "uplink_message": up,
    }  # fmt: skip
    if simulated:
        body["simulated"] = True
    app_uid = f"{application}@{tenant}" if tenant else application
    return f"v3/{app_uid}/devices/{device_id}/up", orjson.dumps(body)


def uplink(
    network: Network, dev_eui: str, sensor_id: str, f_cnt: int, received_ns: int,
    **kwargs: Any,
) -> tuple[str, bytes]:  # fmt: skip
    if network == "chirpstack":
        return chirpstack_uplink(dev_eui, sensor_id, f_cnt, received_ns, **kwargs)
    return tts_uplink(dev_eui, sensor_id.lower(), f_cnt, received_ns, **kwargs)


def envelopes(
    network: Network, readings: Iterable[Reading], raw: bool = False,
    keymap: KeyMap | None = None,
) -> Iterator[tuple[bytes, bytes]]:  # fmt: skip
    """Each synthetic reading as its network server would publish it: received at the
    reading's time, ``seq`` as the frame counter; ``raw`` sends the type's codec bytes
    (types without a codec send decoded values)."""
    from sensornet.catalogue import load_catalogue
    from sensornet.lorawan.keymap import load_keymap

    types = load_catalogue().types
    keys = keymap or load_keymap()
    for r in readings:
        eui = r.device.dev_eui or dev_eui_for(r.device.id)
        sensor_type = types[r.device.type]
        payload: dict[str, Any]
        if raw and sensor_type.codec is not None:
            payload = {"data": encode_values(sensor_type, r.values, keys)}
        else:
            payload = {"decoded": r.values}
        topic, body = uplink(network, eui, r.device.id, r.seq, r.ts_ms * 1_000_000, **payload)
        yield topic.encode(), body
