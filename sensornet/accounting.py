"""Per-device accounting from InfluxDB alone: received, stored, rejected by reason, missing.

Readings carry the device's ``seq`` as a field and dead letters keep it too, so the
account is the same whichever ingester handled a reading, and survives restarts.
``missing`` counts the gaps between the lowest and highest ``seq`` seen; readings lost
before the first one seen cannot be known (docs/accounting.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensornet.influx import InfluxClient, check_identifier
from sensornet.liveness import Liveness, liveness


@dataclass
class DeviceAccount:
    sensor_id: str
    stored: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    min_seq: int | None = None
    max_seq: int | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def received(self) -> int:
        return self.stored + self.rejected_total

    @property
    def missing(self) -> int:
        if self.min_seq is None or self.max_seq is None:
            return 0
        return max(0, self.max_seq - self.min_seq + 1 - self.received)

    def as_dict(self) -> dict[str, object]:
        return {
            "sensor_id": self.sensor_id,
            "received": self.received,
            "stored": self.stored,
            "rejected": self.rejected_total,
            "rejected_by_reason": self.rejected,
            "missing": self.missing,
            "first_seq": self.min_seq,
            "last_seq": self.max_seq,
        }


async def device_account(influx: InfluxClient, sensor_id: str, measurement: str) -> DeviceAccount:
    m = check_identifier(measurement)
    account = DeviceAccount(sensor_id)
    params = {"id": sensor_id}
    stored = await influx.query(
        f'SELECT count("seq"), min("seq"), max("seq") FROM "{m}" WHERE "sensor_id" = $id',  # noqa: S608
        params,
    )
    if stored:
        _, count, low, high = stored[0]["values"][0]
        account.stored, account.min_seq, account.max_seq = int(count), low, high
    rejected = await influx.query(
        'SELECT count("payload_bytes"), min("seq"), max("seq") FROM "dead_letter" '
        'WHERE "device" = $id GROUP BY "reason"',
        params,
    )
    for series in rejected:
        _, count, low, high = series["values"][0]
        account.rejected[series["tags"]["reason"]] = int(count)
        if low is not None:
            account.min_seq = low if account.min_seq is None else min(account.min_seq, low)
        if high is not None:
            account.max_seq = high if account.max_seq is None else max(account.max_seq, high)
    return account


async def count_stored(influx: InfluxClient, measurements: set[str]) -> int:
    """Readings with a ``seq`` stored across ``measurements`` (each stored once: a
    redelivered reading overwrites itself)."""
    total = 0
    for m in sorted(measurements):
        series = await influx.query(f'SELECT count("seq") FROM "{check_identifier(m)}"')  # noqa: S608
        if series:
            total += int(series[0]["values"][0][1])
    return total


@dataclass(frozen=True)
class DeviceLiveness:
    last_seen_ns: int | None
    status: str | None  # the device's own last word: online / offline (its Last Will)
    liveness: Liveness


async def device_liveness(
    influx: InfluxClient, sensor_id: str, measurement: str, interval_s: float, now_ns: int
) -> DeviceLiveness:
    m = check_identifier(measurement)
    params = {"id": sensor_id}
    last = await influx.query(
        f'SELECT * FROM "{m}" WHERE "sensor_id" = $id ORDER BY time DESC LIMIT 1',  # noqa: S608
        params,
    )
    last_seen = int(last[0]["values"][0][0]) if last else None
    status = await influx.query(
        'SELECT last("state") FROM "device_status" WHERE "sensor_id" = $id', params
    )
    state, said_at = (status[0]["values"][0][1], status[0]["values"][0][0]) if status else (None, 0)
    said_offline = state == "offline" and (last_seen is None or said_at >= last_seen)
    if said_offline and last_seen is None:
        last_seen = said_at
    return DeviceLiveness(
        last_seen, state, liveness(last_seen, interval_s, now_ns, said_offline=said_offline)
    )
