"""Device liveness from the last time a sensor was heard, relative to its type's interval.

online   heard within 2 reporting intervals (one late or lost report is normal)
stale    heard within 6 intervals: something is wrong, not yet an outage
offline  longer, or its Last Will / status said offline
never    registered but never heard
"""

from __future__ import annotations

from typing import Literal

Liveness = Literal["online", "stale", "offline", "never"]
ONLINE_INTERVALS = 2.0
STALE_INTERVALS = 6.0


def liveness(
    last_seen_ns: int | None, interval_s: float, now_ns: int, said_offline: bool = False
) -> Liveness:
    if last_seen_ns is None:
        return "never"
    if said_offline:
        return "offline"
    age_s = max(0, now_ns - last_seen_ns) / 1e9
    if age_s <= ONLINE_INTERVALS * interval_s:
        return "online"
    if age_s <= STALE_INTERVALS * interval_s:
        return "stale"
    return "offline"
