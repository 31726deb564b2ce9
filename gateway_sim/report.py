"""Accounting: what the simulator sent (its ground truth) against what the platform holds.

Stored readings are counted per sensor in the run's time window (by sensor and timestamp,
so a duplicate that overwrote itself counts once, and SenML readings without ``seq``
count too); refusals are read from the ``dead_letter`` measurement by device, reason and
seq, and matched against the injected faults' expected reasons.

Two losses are told apart. **Lost on the device**: readings the broker never acknowledged
before the simulated device gave up (its connection's store still held them at the end);
the device knows it lost them, the platform never took them on. **Missing** (the
platform's loss): readings the broker acknowledged — so the platform promised to keep
them — that are neither stored nor refused with a reason. A reading never acknowledged may
still be stored (the broker took it, its PUBACK was lost): such readings are looked up by
their ``seq`` and count as stored, so ``lost_on_device`` is what was never acknowledged
*and* is not stored, and ``missing`` = expected but not found, less those. Exact for
readings that carry a ``seq`` (SenML packs do not: theirs count as lost on the device).

Devices that push over the HTTP input are accounted the same way, an answer standing for
the PUBACK: a reading whose request was never answered 2xx (or 422, its refusals being dead
letters) is lost on the device unless found by its ``seq``; ``*_over_http`` totals give
their share.

LoRaWAN devices (``sensornet simulate-lorawan --report``, ``gateway_sim.ns_publisher``)
are accounted the same way again: the fCnt is the ``seq``, the NS's broker's PUBACK the
acknowledgement.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway_sim.faults import GroundTruth
from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient, check_identifier, rows

RejectKey = tuple[str, str, int | None]


@dataclass(frozen=True, slots=True)
class DeviceAccount:
    device: str
    sent: int
    expected_stored: int
    stored: int
    rejected: int  # refusals booked on this device that match an injected fault
    unexpected: int  # refusals booked on this device that no fault explains
    missing: int  # acknowledged, expected stored or refused, found neither
    lost_on_device: int = 0  # never acknowledged by the broker (the device's loss)


@dataclass
class Report:
    devices: list[DeviceAccount]
    totals: dict[str, int]
    unmatched_expected: list[RejectKey] = field(default_factory=list)
    unexpected_rejects: list[RejectKey] = field(default_factory=list)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        t = self.totals
        return t["missing"] == 0 and t["unexpected"] == 0 and t["extra"] == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "totals": self.totals,
            "by_reason": self.by_reason,
            "unmatched_expected": [list(k) for k in self.unmatched_expected[:50]],
            "unexpected_rejects": [list(k) for k in self.unexpected_rejects[:50]],
        }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


async def stored_counts(
    influx: InfluxClient, types: Mapping[str, str], catalogue: Catalogue, start_ns: int
) -> Counter[str]:
    """Readings per sensor since ``start_ns``, counted on each type's first quantity."""
    out: Counter[str] = Counter()
    for type_id in sorted(set(types.values())):
        sensor_type = catalogue.get(type_id)
        field_name = check_identifier(next(iter(sensor_type.quantities)))
        q = (
            f'SELECT count("{field_name}") FROM "{check_identifier(type_id)}" '  # noqa: S608
            'WHERE time >= $start GROUP BY "sensor_id"'
        )
        for row in rows(await influx.query(q, {"start": _iso(start_ns)})):
            out[str(row["sensor_id"])] += int(row["count"])
    return out


async def dead_letters(influx: InfluxClient, start_ns: int) -> Counter[RejectKey]:
    q = (
        'SELECT "seq", "payload_bytes" FROM "dead_letter" WHERE time >= $start '
        'GROUP BY "device", "reason"'
    )
    out: Counter[RejectKey] = Counter()
    for row in rows(await influx.query(q, {"start": _iso(start_ns)})):
        seq = row.get("seq")
        out[(str(row["device"]), str(row["reason"]), None if seq is None else int(seq))] += 1
    return out


async def stored_after_all(
    influx: InfluxClient, types: Mapping[str, str], keys: Iterable[tuple[str, int]], start_ns: int
) -> Counter[str]:
    """Of the readings never acknowledged, how many per device InfluxDB holds all the same
    (the broker took them; the PUBACK went down with the connection). Looked up by the
    ``seq`` stored with the reading: one query per device that lost any; SenML readings
    carry no ``seq`` and are never found here (they stay lost on the device)."""
    wanted: dict[str, set[int]] = {}
    for device, seq in keys:
        if device in types:
            wanted.setdefault(device, set()).add(seq)
    out: Counter[str] = Counter()
    for device, seqs in sorted(wanted.items()):
        q = (
            f'SELECT "seq" FROM "{check_identifier(types[device])}" '  # noqa: S608
            'WHERE "sensor_id" = $id AND time >= $start'
        )
        found = rows(await influx.query(q, {"id": device, "start": _iso(start_ns)}))
        out[device] = len(seqs & {int(r["seq"]) for r in found if r.get("seq") is not None})
    return out


def compare(
    truth: GroundTruth,
    devices: Iterable[str],
    stored: Counter[str],
    rejects: Counter[RejectKey],
    unacked_stored: Counter[str] | None = None,
) -> Report:
    """``unacked_stored``: readings never acknowledged that are stored all the same
    (:func:`stored_after_all`); they count as stored, not as lost on the device."""
    found = unacked_stored or Counter()
    ids = set(devices)
    expected = truth.expected_rejects
    mine = Counter({k: n for k, n in rejects.items() if k[0] in ids or k in expected})
    matched = mine & expected
    unmatched = expected - matched
    unexpected = mine - matched
    matched_by_device: Counter[str] = Counter()
    for (device, _, _), n in matched.items():
        matched_by_device[device] += n
    unexpected_by_device: Counter[str] = Counter()
    for (device, _, _), n in unexpected.items():
        unexpected_by_device[device] += n
    unmatched_by_device: Counter[str] = Counter()
    for (device, _, _), n in unmatched.items():
        unmatched_by_device[device] += n
    accounts = []
    extra = 0
    for device in sorted(ids | set(truth.sent)):
        want, got = truth.expected_stored[device], stored[device]
        extra += max(0, got - want)
        lost = max(0, truth.unacked[device] - found[device])
        accounts.append(
            DeviceAccount(
                device=device,
                sent=truth.sent[device],
                expected_stored=want,
                stored=got,
                rejected=matched_by_device[device],
                unexpected=unexpected_by_device[device],
                missing=max(0, max(0, want - got) + unmatched_by_device[device] - lost),
                lost_on_device=lost,
            )
        )
    by_reason: dict[str, dict[str, int]] = {}
    for (_, reason, _), n in expected.items():
        by_reason.setdefault(reason, {"injected": 0, "platform": 0})["injected"] += n
    for (_, reason, _), n in mine.items():
        by_reason.setdefault(reason, {"injected": 0, "platform": 0})["platform"] += n
    totals = {
        "sent": sum(truth.sent.values()),
        "expected_stored": sum(truth.expected_stored.values()),
        "stored": sum(min(stored[d], truth.expected_stored[d]) for d in ids),
        "injected_faults": sum(truth.faults.values()),
        "expected_rejected": sum(expected.values()),
        "rejected": sum(matched.values()),
        "unexpected": sum(unexpected.values()),
        "missing": sum(a.missing for a in accounts),
        "extra": extra,
        "not_sent": sum(truth.not_sent.values()),
        "acl_denied": sum(truth.denied.values()),
        "lost_on_devices": sum(a.lost_on_device for a in accounts),
    }
    if truth.over_http:  # the same figures for the readings sent over the HTTP input
        http = [a for a in accounts if a.device in truth.over_http]
        totals |= {
            "sent_over_http": sum(a.sent for a in http),
            "stored_over_http": sum(min(a.stored, a.expected_stored) for a in http),
            "rejected_over_http": sum(a.rejected for a in http),
            "missing_over_http": sum(a.missing for a in http),
            "lost_on_devices_over_http": sum(a.lost_on_device for a in http),
        }
    return Report(
        accounts,
        totals,
        sorted(unmatched.elements(), key=str),
        sorted(unexpected.elements(), key=str),
        by_reason,
    )


async def account(
    influx: InfluxClient,
    truth: GroundTruth,
    types: Mapping[str, str],
    catalogue: Catalogue,
    start_ns: int,
    *,
    timeout_s: float = 60.0,
    settle_s: float = 3.0,
) -> Report:
    """Compare once the platform has caught up: exact, or no change for ``settle_s``."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] | None = None
    changed_at = time.monotonic()
    while True:
        stored = await stored_counts(influx, types, catalogue, start_ns)
        rejects = await dead_letters(influx, start_ns)
        found = await stored_after_all(influx, types, truth.unacked_keys, start_ns)
        report = compare(truth, types, stored, rejects, found)
        now = time.monotonic()
        if report.exact or now > deadline:
            return report
        state = (sum(stored.values()), sum(rejects.values()))
        if state != last:
            last, changed_at = state, now
        elif now - changed_at >= settle_s:
            return report
        await asyncio.sleep(0.5)


def as_dict(account: DeviceAccount) -> dict[str, Any]:
    return asdict(account)
