"""Timestamp normalisation: epoch seconds / ms / µs / ns or RFC 3339, to integer ns (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from sensornet.errors import PayloadError, TimeOutOfRange
from sensornet.rules import MICROS_BELOW as _MICROS_BELOW
from sensornet.rules import MILLIS_BELOW as _MILLIS_BELOW
from sensornet.rules import SECONDS_BELOW as _SECONDS_BELOW


def to_ns(value: object) -> int:
    """Normalise one device timestamp to ns since the epoch; raises ``PayloadError``."""
    if isinstance(value, bool):
        raise PayloadError("bad_timestamp", f"timestamp must be a number or RFC 3339, not {value}")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")) or value <= 0:
            raise PayloadError("bad_timestamp", f"timestamp {value!r} is not a positive number")
        magnitude = abs(value)
        if magnitude < _SECONDS_BELOW:
            return round(value * 1_000_000_000) if isinstance(value, float) else value * 10**9
        if magnitude < _MILLIS_BELOW:
            return round(value * 1_000_000) if isinstance(value, float) else value * 10**6
        if magnitude < _MICROS_BELOW:
            return round(value * 1_000) if isinstance(value, float) else value * 10**3
        return int(value)
    if isinstance(value, str):
        return rfc3339_to_ns(value)
    raise PayloadError("bad_timestamp", f"timestamp of type {type(value).__name__}")


def rfc3339_to_ns(text: str) -> int:
    """RFC 3339 with an explicit offset; fractional seconds kept to the ns."""
    if len(text) > 40:
        raise PayloadError("bad_timestamp", "RFC 3339 timestamp too long")
    main, frac_ns, tail = text, 0, ""
    if "." in text:
        main, rest = text.split(".", 1)
        digits = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                tail = rest[i:]
                break
            digits += ch
        else:
            tail = ""
        if not digits or len(digits) > 9:
            raise PayloadError("bad_timestamp", f"bad fractional seconds in {text!r}")
        frac_ns = int(digits.ljust(9, "0"))
        main = main + tail
    try:
        parsed = datetime.fromisoformat(main.replace("z", "Z"))
    except ValueError as exc:
        raise PayloadError("bad_timestamp", f"{text!r} is not RFC 3339") from exc
    if parsed.tzinfo is None or "T" not in main.upper():
        raise PayloadError("bad_timestamp", f"{text!r} needs a date, a time and an offset")
    return int(parsed.timestamp()) * 10**9 + frac_ns


#: What InfluxDB can hold: int64 nanoseconds since the epoch (1677-09-21 to 2262-04-11),
#: to the microsecond a ``datetime`` has, inside the bounds
STORE_EARLIEST = datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC)
STORE_LATEST = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)


def check_store_time(at: datetime, name: str) -> datetime:
    """``at`` when the time-series store can hold it; raises ``TimeOutOfRange`` saying
    why. Python compares aware times without converting them, so no offset overflows here
    (``0001-01-01T00:00:00+01:00`` is refused, not an ``OverflowError``). Naive times are
    the caller's to refuse (they need an offset)."""
    if at.tzinfo is not None and not STORE_EARLIEST <= at <= STORE_LATEST:
        raise TimeOutOfRange(
            f"{name} {at.isoformat()} is outside what the time-series store can hold "
            f"(int64 nanoseconds: {STORE_EARLIEST.isoformat()} to {STORE_LATEST.isoformat()})"
        )
    return at
