"""InfluxDB line protocol encoder. Pure functions; the escaping is proven by property tests
against a real InfluxDB (tests/test_lineprotocol_roundtrip.py).

InfluxDB 1.x cannot represent every string: its scanner skips the byte after any
backslash, so a backslash in a name or tag value, or one ending a string field, changes
what is stored; a newline outside a string field ends the line. Such strings are refused
with ``LineProtocolError`` instead of being written wrongly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from sensornet.errors import LineProtocolError

FieldValue = float | int | bool | str

_NAME_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _check_name(kind: str, value: str) -> None:
    if not value:
        raise LineProtocolError(f"{kind} must not be empty")
    if "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise LineProtocolError(f"{kind} {value!r} contains a backslash or control character")


def escape_measurement(name: str) -> str:
    _check_name("measurement", name)
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} would be read as a comment")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_name(kind: str, name: str) -> str:
    """Escape a tag key, tag value or field key."""
    _check_name(kind, name)
    if name == "time" and kind != "tag value":
        raise LineProtocolError(f"{kind} 'time' is reserved by InfluxDB (it drops or refuses it)")
    return name.translate(_NAME_ESCAPES)


def encode_field_value(key: str, value: FieldValue) -> str:
    # bool first: bool is a subclass of int
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise LineProtocolError(f"field {key!r}: integer {value} out of int64 range")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {key!r}: {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        if any(ord(c) < 32 and c not in "\t" for c in value) or value.endswith("\\"):
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
    if not fields:
        raise LineProtocolError(f"point of {measurement!r} has no fields")
    clash = tags.keys() & fields.keys()
    if clash:
        raise LineProtocolError(f"names used as tag and field at once: {sorted(clash)}")
    head = escape_measurement(measurement)
    tag_part = "".join(
        f",{escape_name('tag key', k)}={escape_name('tag value', v)}"
        for k, v in sorted(tags.items())
    )
    field_part = ",".join(
        f"{escape_name('field key', k)}={encode_field_value(k, v)}" for k, v in fields.items()
    )
    return f"{head}{tag_part} {field_part} {int(timestamp_ns)}"


def encode_lines(lines: Iterable[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()
