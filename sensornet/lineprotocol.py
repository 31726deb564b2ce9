"""InfluxDB line protocol encoder. Pure functions; the escaping is proven by property tests
against a real InfluxDB (tests/test_lineprotocol.py).

InfluxDB 1.x cannot represent every string: its scanner skips the byte after any
backslash, so a backslash in a name or tag value, or one ending a string field, changes
what is stored; a newline outside a string field ends the line. Such strings are refused
with ``LineProtocolError`` instead of being written wrongly.

Names and tag sets repeat (a few measurements, thousands of sensors), so their escaped
forms are cached: on the ingest hot path only field values are formatted per reading.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import orjson

from sensornet.errors import LineProtocolError

FieldValue = float | int | bool | str

_NAME_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\\]")
_UNSAFE_STRING = re.compile(r"[\x00-\x08\x0a-\x1f]|\\\Z")
_INT64 = 2**63


def _check_name(kind: str, value: str) -> None:
    if not value:
        raise LineProtocolError(f"{kind} must not be empty")
    if _UNSAFE_NAME.search(value):
        raise LineProtocolError(f"{kind} {value!r} contains a backslash or control character")


@lru_cache(maxsize=1024)
def escape_measurement(name: str) -> str:
    _check_name("measurement", name)
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} would be read as a comment")
    return name.translate(_MEASUREMENT_ESCAPES)


@lru_cache(maxsize=65536)
def escape_name(kind: str, name: str) -> str:
    """Escape a tag key, tag value or field key."""
    _check_name(kind, name)
    if name == "time" and kind != "tag value":
        raise LineProtocolError(f"{kind} 'time' is reserved by InfluxDB (it drops or refuses it)")
    return name.translate(_NAME_ESCAPES)


@lru_cache(maxsize=65536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    return escape_measurement(measurement) + "".join(
        f",{escape_name('tag key', k)}={escape_name('tag value', v)}" for k, v in tags
    )


def format_float(value: float) -> str:
    """Shortest text that reads back as the same float, as orjson writes it: the ingest
    fast lane lets orjson write whole field sets, and both paths must write the same."""
    return orjson.dumps(value).decode()


def encode_field_value(key: str, value: FieldValue) -> str:
    if isinstance(value, bool):  # first: bool is a subclass of int
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {key!r}: {value} is not a finite number")
        return format_float(value)
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise LineProtocolError(f"field {key!r}: integer {value} out of int64 range")
        return f"{value}i"
    if isinstance(value, str):
        if _UNSAFE_STRING.search(value):
            raise LineProtocolError(
                f"field {key!r}: string has a control character or a trailing backslash"
            )
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    raise LineProtocolError(f"field {key!r}: unsupported type {type(value).__name__}")


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    timestamp_ns: int,
) -> str:
    """One line, without the trailing newline. Tags are sorted (InfluxDB's fast path)."""
    if not tags.keys().isdisjoint(fields.keys()):
        clash = sorted(tags.keys() & fields.keys())
        raise LineProtocolError(f"names used as tag and field at once: {clash}")
    head = series_head(measurement, tuple(sorted(tags.items())))
    return f"{head} {encode_fields(fields)} {int(timestamp_ns)}"


def series_head(measurement: str, sorted_tags: tuple[tuple[str, str], ...]) -> str:
    """Measurement and tag set, escaped (cached: a sensor's series never changes)."""
    return _series(measurement, sorted_tags)


def encode_fields(fields: Mapping[str, FieldValue]) -> str:
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    parts = []
    for key, value in fields.items():
        if type(value) is float and math.isfinite(value):  # the hot case, inline
            parts.append(_field_prefix(key) + format_float(value))
        else:
            parts.append(_field_prefix(key) + encode_field_value(key, value))
    return ",".join(parts)


@lru_cache(maxsize=65536)
def _field_prefix(key: str) -> str:
    return escape_name("field key", key) + "="


def encode_lines(lines: Iterable[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()
