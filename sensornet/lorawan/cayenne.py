"""Cayenne Low Power Payload (LPP) decoding. Pure.

The format as myDevices published it (cayenne-docs, ``docs/LORA.md``): a sequence of
``channel (1 byte) | type (1 byte) | value (fixed size, big-endian)``, the types taken
from IPSO Smart Objects (LPP type = IPSO object id - 3200). Each value is named
``<type>_<channel>`` as The Things Stack's own CayenneLPP formatter names it
(``temperature_3``), and a multi-axis value one key per axis (``accelerometer_6_x``,
``gps_1_latitude``), so the names reach the key map (``sensornet.lorawan.keymap``) flat.

Why our own module (docs/decisions.md, "CayenneLPP"): the PyPI packages measured here
either crash on an unknown type with an unrelated ``AttributeError`` (pycayennelpp 2.4.0,
last release 2021) or return a silently shortened result for one (python-cayennelpp
0.1.0); a truncated or unknown frame must be refused with its offset instead, so the
reading is a dead letter that says why and nothing is half-stored.
"""

from __future__ import annotations

from sensornet.errors import PayloadError

# type byte -> (name, value size in bytes, axes with (offset, width, signed, divisor))
_Axis = tuple[str, int, int, bool, float]
_TYPES: dict[int, tuple[str, int, tuple[_Axis, ...]]] = {}


def _type(code: int, name: str, *axes: _Axis) -> None:
    size = max(offset + width for _, offset, width, _, _ in axes)
    _TYPES[code] = (name, size, axes)


_type(0, "digital_in", ("", 0, 1, False, 1))
_type(1, "digital_out", ("", 0, 1, False, 1))
_type(2, "analog_in", ("", 0, 2, True, 100))
_type(3, "analog_out", ("", 0, 2, True, 100))
_type(101, "luminosity", ("", 0, 2, False, 1))
_type(102, "presence", ("", 0, 1, False, 1))
_type(103, "temperature", ("", 0, 2, True, 10))
_type(104, "relative_humidity", ("", 0, 1, False, 2))
_type(113, "accelerometer", ("x", 0, 2, True, 1000), ("y", 2, 2, True, 1000),
      ("z", 4, 2, True, 1000))  # fmt: skip
_type(115, "barometric_pressure", ("", 0, 2, False, 10))
_type(134, "gyrometer", ("x", 0, 2, True, 100), ("y", 2, 2, True, 100), ("z", 4, 2, True, 100))
_type(136, "gps", ("latitude", 0, 3, True, 10000), ("longitude", 3, 3, True, 10000),
      ("altitude", 6, 3, True, 100))  # fmt: skip


def decode_lpp(data: bytes) -> dict[str, float]:
    """Every value of an LPP frame by name; ``PayloadError("codec_error")`` for an empty,
    truncated or unknown frame, or one that names a channel's value twice."""
    if not data:
        raise PayloadError("codec_error", "CayenneLPP: empty payload")
    out: dict[str, float] = {}
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise PayloadError(
                "codec_error", f"CayenneLPP: frame ends inside a header at byte {at}"
            )
        channel, code = data[at], data[at + 1]
        known = _TYPES.get(code)
        if known is None:
            raise PayloadError("codec_error", f"CayenneLPP: unknown type {code} at byte {at + 1}")
        name, size, axes = known
        start = at + 2
        if start + size > len(data):
            detail = f"CayenneLPP: {name} on channel {channel} needs {size} bytes at byte {start}"
            raise PayloadError("codec_error", detail)
        for axis, offset, width, signed, divisor in axes:
            raw = int.from_bytes(
                data[start + offset : start + offset + width], "big", signed=signed
            )
            key = f"{name}_{channel}" + (f"_{axis}" if axis else "")
            if key in out:
                raise PayloadError("codec_error", f"CayenneLPP: {key} appears twice")
            out[key] = raw / divisor if divisor != 1 else float(raw)
        at = start + size
    return out
