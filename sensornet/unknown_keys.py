"""Keys a reading carries that its type does not know (``fw``, ``rssi``, ``battery_voltage``
after a firmware update): they no longer cost the reading. Its known quantities are
stored, and each unknown key is counted per device, never silently dropped: in the
``unknown_keys`` measurement (tags ``device``, ``key``; field ``count``), written with the
batch it came in, read by the per-device accounting and by platform health.

Keys become tag values, so what a device can make of them is bounded: a key that is not a
plain identifier is counted as ``_invalid``, and past ``MAX_KEYS_PER_DEVICE`` distinct keys
of one device (per ingester process) the rest count as ``_other``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sensornet.lineprotocol import encode_point

MEASUREMENT = "unknown_keys"
MAX_KEYS_PER_DEVICE = 32
INVALID = "_invalid"
OTHER = "_other"
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class KeyLabels:
    """The tag value each device's unknown key is counted under (bounded, above)."""

    def __init__(self, per_device: int = MAX_KEYS_PER_DEVICE) -> None:
        self._per_device = per_device
        self._seen: dict[str, set[str]] = {}

    def label(self, device_id: str, key: str) -> str:
        if not _PLAIN.match(key):
            return INVALID
        seen = self._seen.setdefault(device_id, set())
        if key in seen:
            return key
        if len(seen) >= self._per_device:
            return OTHER
        seen.add(key)
        return key


def unknown_key_lines(counts: Mapping[tuple[str, str], int], now_ns: int) -> list[str]:
    """One point per (device, key) of a batch, at the batch's time."""
    return [
        encode_point(MEASUREMENT, {"device": device, "key": key}, {"count": count}, now_ns)
        for (device, key), count in sorted(counts.items())
    ]
