"""Sensor.Community (airrohr firmware, data.sensor.community) payloads to raw readings. Pure.

Two shapes carry the same ``sensordatavalues`` (``[{"value_type": "SDS_P1", "value":
"12.30"}, ...]``, values as text):

- **the firmware's push** ("send to own API", ``sendDataToOptionalApis`` in
  ``airrohr-firmware.ino``): ``{"esp8266id": "<chip id>", "software_version": ...,
  "sensordatavalues": [...]}``, every value type prefixed by its sensor (``SDS_P1``,
  ``BME280_pressure``) except the DHT22's (``temperature``, ``humidity``) and the
  PPD42NS's (``P1``, ``durP1``, ...). Pushed in the Sensor.Community API's own shape
  (``sendSensorCommunity``) the prefix is stripped and the ``X-PIN`` header says which
  sensor (``ext_def.h``: 1 particulates, 3/11 BMP/BME, 5 PPD42NS, 7 DHT22/HTU21D/SHT3x,
  9 GPS, 13 DS18B20, 15 DNMS, 17 SCD30), and ``X-Sensor`` is ``esp8266-<chip id>``
  (``esp32-`` on an ESP32). The node is found by its chip id (registry ``sc_chip``); the
  firmware sends no time, so the reading has its arrival time.
- **a record of the public data API** (``data.sensor.community/airrohr/v1/filter/...``):
  ``{"id": <measurement id>, "timestamp": "2019-11-28 15:38:54" (UTC), "location": {"id":
  8737, ...}, "sensor": {"id": 17241, "pin": "1", "sensor_type": {"name": "SDS011"}},
  "sensordatavalues": [{"value_type": "P1", "value": "0.80"}, ...]}``; the sensor type
  says what the values are, the node is found by its location id (registry
  ``sc_location``).

Each value type maps to a quantity by the firmware's own meaning and unit (``P1`` is PM10
and ``P2`` PM2.5 for every particulate sensor: the HPM's debug label says otherwise, its
value is ``hpm_pm10_sum``; pressures are in Pa, converted to the catalogue's hPa). Types
with no catalogue quantity keep a plain name (``pm4``, ``co2``, ``la_max``) for the
pipeline's unknown-key accounting. The firmware's diagnostics (``samples``,
``min_micro``, ``max_micro``, ``interval``, ``signal``, ``GPS_timestamp``) describe the
node, not the air, and the data API's ``pressure_at_sealevel`` is computed from what the
node measured: neither is a reading (docs/inputs/sensor-community.md). A value that is no
number (``"nan"``) goes on as it came, so validation refuses the reading booked to its node.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from sensornet.errors import PayloadError
from sensornet.records import Decoded, ItemReject, RawReading
from sensornet.senml_units import convert

MAX_VALUES = 100  # a node with every sensor the firmware knows sends about 60
MAX_RECORDS = 10_000

# Families of sensors, and what each of their (unprefixed) value types is:
# value type -> (key, unit of the firmware's value by SenML name, None: no unit)
_PM: dict[str, tuple[str, str | None]] = {
    "P0": ("pm1", "ug/m3"), "P1": ("pm10", "ug/m3"), "P2": ("pm25", "ug/m3"),
    "P4": ("pm4", "ug/m3"), "P01": ("pm01", "ug/m3"), "P03": ("pm03", "ug/m3"),
    "P05": ("pm05", "ug/m3"), "P5": ("pm5", "ug/m3"),
    "N01": ("nc01", None), "N03": ("nc03", None), "N05": ("nc05", None),
    "N1": ("nc1", None), "N25": ("nc25", None), "N4": ("nc4", None), "N5": ("nc5", None),
    "N10": ("nc10", None), "TS": ("particle_size", None),
}  # fmt: skip
_PPD: dict[str, tuple[str, str | None]] = {
    "P1": ("ppd_p1", None), "P2": ("ppd_p2", None), "durP1": ("ppd_dur_p1", None),
    "durP2": ("ppd_dur_p2", None), "ratioP1": ("ppd_ratio_p1", None),
    "ratioP2": ("ppd_ratio_p2", None),
}  # fmt: skip
_CLIMATE: dict[str, tuple[str, str | None]] = {
    "temperature": ("temperature", "Cel"), "humidity": ("humidity", "%RH"),
    "pressure": ("pressure", "Pa"), "pressure_at_sealevel": ("pressure_sealevel", "Pa"),
    "co2_ppm": ("co2", "ppm"),
}  # fmt: skip
_NOISE: dict[str, tuple[str, str | None]] = {
    "noise_LAeq": ("laeq", "dB"), "noise_LA_min": ("la_min", "dB"),
    "noise_LA_max": ("la_max", "dB"), "noise_Leq": ("leq", "dB"),
}  # fmt: skip
_GPS: dict[str, tuple[str, str | None]] = {
    "lat": ("gps_lat", "lat"), "lon": ("gps_lon", "lon"), "height": ("gps_height", "m"),
}  # fmt: skip
FAMILIES: dict[str, dict[str, tuple[str, str | None]]] = {
    "pm": _PM, "ppd": _PPD, "climate": _CLIMATE, "noise": _NOISE, "gps": _GPS,
}  # fmt: skip

# The firmware's push: prefix of each sensor's value types -> family (airrohr-firmware.ino)
PREFIXES: dict[str, str] = {
    "SDS_": "pm", "PMS_": "pm", "HPM_": "pm", "NPM_": "pm", "IPS_": "pm", "SPS30_": "pm",
    "BME280_": "climate", "BMP280_": "climate", "BMP_": "climate", "HTU21D_": "climate",
    "SHT3X_": "climate", "DS18B20_": "climate", "SCD30_": "climate", "DNMS_": "noise",
    "GPS_": "gps",
}  # fmt: skip
# X-PIN of the Sensor.Community API -> family (ext_def.h, *_API_PIN)
PINS: dict[str, str] = {
    "1": "pm", "3": "climate", "5": "ppd", "7": "climate", "9": "gps", "11": "climate",
    "13": "climate", "15": "noise", "17": "climate",
}  # fmt: skip
# The data API's sensor_type.name -> family
SENSOR_TYPES: dict[str, str] = {
    "SDS011": "pm", "SDS021": "pm", "PMS1003": "pm", "PMS3003": "pm", "PMS5003": "pm",
    "PMS6003": "pm", "PMS7003": "pm", "HPM": "pm", "NextPM": "pm", "SPS30": "pm",
    "IPS-7100": "pm", "PPD42NS": "ppd", "BME280": "climate", "BMP280": "climate",
    "BMP180": "climate", "DHT22": "climate", "HTU21D": "climate", "SHT30": "climate",
    "SHT31": "climate", "SHT35": "climate", "SHT3x": "climate", "DS18B20": "climate",
    "SCD30": "climate", "DNMS (Laerm)": "noise", "DNMS": "noise", "GPS-NEO-6M": "gps",
}  # fmt: skip
#: Not readings: the firmware's report on itself (docs/inputs/sensor-community.md)
DIAGNOSTICS = frozenset({"samples", "min_micro", "max_micro", "interval", "signal",
                         "GPS_timestamp", "timestamp"})  # fmt: skip
#: Not stored: computed by Sensor.Community from what the node measured (the station
#: pressure and the node's altitude), so the measurement itself is what the platform keeps
DERIVED = frozenset({"pressure_at_sealevel"})
# What the catalogue stores each known key in, when that is not the firmware's unit
_STORED_UNIT = {"pressure": "hPa", "pressure_sealevel": "hPa"}
_CHIP = re.compile(r"[0-9A-Za-z]{1,32}")
_X_SENSOR = re.compile(r"(?:esp8266|esp32)-([0-9A-Za-z]{1,32})")
_TYPE = re.compile(r"[A-Za-z0-9_.()\- ]{1,64}")


def _number(text: Any, value_type: str) -> float | str:
    """The value as a number; text that is none is passed on as it came, so validation
    refuses the reading (``wrong_type``, ``not_finite``) booked to the node it names."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise PayloadError("bad_shape", f"{value_type}: value must be a number as text")
    try:
        return float(text)
    except ValueError:
        return str(text)[:64]


def _value(family: str | None, value_type: str, text: Any) -> tuple[str, float | str] | None:
    """``(key, value in the stored unit)``, or None for a diagnostic or derived value."""
    if value_type in DIAGNOSTICS or value_type in DERIVED:
        return None
    table = FAMILIES.get(family or "", {})
    mapped = table.get(value_type)
    number = _number(text, value_type)
    if mapped is None:  # a type this table does not know: kept under its own name
        return _plain(value_type), number
    key, unit = mapped
    target = _STORED_UNIT.get(key)
    if unit is not None and target is not None and isinstance(number, float):
        number = convert(number, unit, target) if math.isfinite(number) else number
    return key, number


def _plain(value_type: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", value_type.lower())[:64] or "_"


def _values(items: Any, family_of: Any) -> dict[str, float | str]:
    if not isinstance(items, list) or not items:
        raise PayloadError("no_values", "'sensordatavalues' must be a non-empty array")
    if len(items) > MAX_VALUES:
        raise PayloadError("too_many", f"{len(items)} sensordatavalues")
    values: dict[str, float | str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise PayloadError("bad_shape", "each sensordatavalue must be an object")
        value_type = item.get("value_type")
        if not isinstance(value_type, str) or not _TYPE.fullmatch(value_type):
            raise PayloadError("bad_shape", f"bad value_type {value_type!r:.40}")
        family, bare = family_of(value_type)
        mapped = _value(family, bare, item.get("value"))
        if mapped is None:
            continue
        key, number = mapped
        if key in values:
            raise PayloadError("duplicate_key", f"{value_type} repeats {key!r}")
        values[key] = number
    if not values:
        raise PayloadError("no_values", "only diagnostics, no measurement")
    return values


def _object(payload: bytes, max_bytes: int) -> Any:
    if len(payload) > max_bytes:
        raise PayloadError("oversize", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("invalid_json", str(exc)[:200]) from exc


def decode_push(
    payload: bytes,
    x_sensor: str | None = None,
    x_pin: str | None = None,
    max_bytes: int = 64 * 1024,
) -> Decoded:
    """The firmware's push: one reading of the node, named by its chip id."""
    doc = _object(payload, max_bytes)
    if not isinstance(doc, dict):
        raise PayloadError("bad_shape", "a Sensor.Community push is a JSON object")
    chip = doc.get("esp8266id")
    header_chip = None
    if x_sensor is not None:
        match = _X_SENSOR.fullmatch(x_sensor)
        if match is None:
            raise PayloadError("bad_shape", f"X-Sensor {x_sensor!r:.40} is not esp8266-<chip id>")
        header_chip = match[1]
    if chip is None:
        chip = header_chip
    if not isinstance(chip, str) or not _CHIP.fullmatch(chip):
        raise PayloadError("bad_shape", f"esp8266id {chip!r:.40} is not a chip id")
    if header_chip is not None and header_chip != chip:
        raise PayloadError("foreign_sensor", f"X-Sensor names {header_chip}, the body {chip}")
    if x_pin is not None:
        family = PINS.get(x_pin)
        if family is None:
            raise PayloadError("bad_shape", f"X-PIN {x_pin!r:.10} is no sensor of the firmware")
        values = _values(doc.get("sensordatavalues"), lambda t: (family, t))
    else:
        values = _values(doc.get("sensordatavalues"), _push_family)
    return Decoded([RawReading(values, None, None, chip, "sc_chip")], [])


def node_of_login(user: str) -> str | None:
    """The chip id of a login name in the firmware's own form of the node's name
    (``esp8266-<chip id>``, ``esp32-<chip id>``: what it sends as ``X-Sensor``), else None."""
    match = _X_SENSOR.fullmatch(user)
    return None if match is None else match[1]


def pushed_chip(payload: bytes, x_sensor: str | None) -> str | None:
    """The chip id a push is for: its ``X-Sensor`` header's (the firmware always sends
    it), else the body's ``esp8266id``; None when neither is readable (the decoder then
    refuses the push with its reason)."""
    if x_sensor is not None:
        match = _X_SENSOR.fullmatch(x_sensor)
        return None if match is None else match[1]
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    chip = doc.get("esp8266id") if isinstance(doc, dict) else None
    return chip if isinstance(chip, str) and _CHIP.fullmatch(chip) else None


def _push_family(value_type: str) -> tuple[str | None, str]:
    for prefix, family in PREFIXES.items():
        if value_type.startswith(prefix):
            return family, value_type[len(prefix) :]
    if value_type in _CLIMATE:
        return "climate", value_type  # the DHT22's, unprefixed
    if value_type in _PPD:
        return "ppd", value_type  # the PPD42NS's, unprefixed
    return None, value_type


def push_format(payload: bytes, topic: str, max_bytes: int) -> Decoded:
    """``sensornet.formats`` decoder ``sensor.community``. The HTTP input passes the
    ``X-Sensor`` and ``X-PIN`` headers, when the node sent them, as the topic's last
    segments ``x-sensor=<value>`` and ``x-pin=<value>``."""
    headers = dict(
        part.split("=", 1) for part in topic.split("/") if part.startswith(("x-sensor=", "x-pin="))
    )
    return decode_push(payload, headers.get("x-sensor"), headers.get("x-pin"), max_bytes)


def _time_ns(text: Any) -> int:
    if not isinstance(text, str) or len(text) > 40:
        raise PayloadError("bad_timestamp", f"timestamp {text!r:.40}")
    try:
        parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise PayloadError(
            "bad_timestamp", f"timestamp {text!r:.40} is not 'Y-m-d H:M:S'"
        ) from None
    return int(parsed.timestamp()) * 10**9


def record_key(record: Any) -> tuple[str, str] | None:
    """What makes a data API record unique across pulls: its measurement id, else its
    location and time (the dedup of ``ingest/inputs/sensor_community.py``)."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("id"), int):
        return ("id", str(record["id"]))
    location = record.get("location")
    if isinstance(location, dict) and "id" in location:
        return ("at", f"{location['id']}@{record.get('timestamp')}")
    return None


def _record(record: Any) -> RawReading:
    if not isinstance(record, dict):
        raise PayloadError("bad_shape", "each record must be an object")
    location, sensor = record.get("location"), record.get("sensor")
    if not isinstance(location, dict) or not isinstance(sensor, dict):
        raise PayloadError("bad_shape", "a record needs 'location' and 'sensor' objects")
    location_id = location.get("id")
    if isinstance(location_id, bool) or not isinstance(location_id, int) or location_id < 0:
        raise PayloadError("bad_shape", f"location id {location_id!r:.20} is not a number")
    sensor_type = sensor.get("sensor_type")
    name = sensor_type.get("name") if isinstance(sensor_type, dict) else None
    family = SENSOR_TYPES.get(name) if isinstance(name, str) else None
    values = _values(record.get("sensordatavalues"), lambda t: (family, t))
    return RawReading(values, _time_ns(record.get("timestamp")), None, str(location_id),
                      "sc_location")  # fmt: skip


def decode_api(payload: bytes, max_bytes: int = 16 * 1024 * 1024) -> Decoded:
    """Records of the public data API (a JSON array): one reading each, a bad record
    refused alone."""
    doc = _object(payload, max_bytes)
    if not isinstance(doc, list):
        raise PayloadError("bad_shape", "the data API answers a JSON array of records")
    if len(doc) > MAX_RECORDS:
        raise PayloadError("too_many", f"{len(doc)} records in one answer")
    out = Decoded([], [])
    for index, record in enumerate(doc):
        try:
            out.readings.append(_record(record))
        except PayloadError as exc:
            location = record.get("location") if isinstance(record, dict) else None
            named = location.get("id") if isinstance(location, dict) else None
            error = PayloadError(exc.reason, f"location {named!r:.20}: {exc.detail}")
            out.rejects.append(ItemReject(index, None, error))
    return out


def api_format(payload: bytes, topic: str, max_bytes: int) -> Decoded:
    """``sensornet.formats`` decoder ``sensor.community.api``."""
    return decode_api(payload, max_bytes)
