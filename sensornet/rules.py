"""The rules a reading must meet, stated once: the codec and validation (the general
path) and the fast lane's compiled shapes (``ingest/fastlane.py``) all read them here, so
a new or changed rule is written once and both paths follow (tests/test_fastlane.py checks
they agree over generated messages)."""

from __future__ import annotations

from typing import TypeGuard

# Keys of a reading object that are not quantities (sensornet.codec): its time, its
# sequence number, the sensor it names in a pack, and the nested values object.
READING_KEYS: frozenset[str] = frozenset({"ts", "seq", "sensor", "values"})

# ``seq``: a non-negative integer that fits InfluxDB's int64.
SEQ_LIMIT = 2**63

# Epoch timestamps: the magnitude decides the unit. 1e11 s is the year 5138, as are
# 1e14 ms and 1e17 µs; past that, nanoseconds (sensornet.timestamps).
SECONDS_BELOW = 10**11
MILLIS_BELOW = 10**14
MICROS_BELOW = 10**17

# The accepted window around the platform clock (sensornet.validation).
MAX_FUTURE_NS = 5 * 60 * 10**9  # device clocks drift; more than this is a broken clock
MAX_PAST_NS = 30 * 24 * 3600 * 10**9  # a gateway may replay a month-old buffer


def seq_ok(value: object) -> TypeGuard[int]:
    """A ``seq`` as stored: an int (never a bool) in [0, 2**63)."""
    return type(value) is int and 0 <= value < SEQ_LIMIT
