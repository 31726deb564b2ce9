"""Poison messages on a real ingester process: the worst messages the codec lets through,
every item refused, must not make the ingester's memory grow with payload x items, and the
readings after them are stored (docs/payloads.md, "Dead letters")."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import orjson
import pytest
from ingester_process import IngesterProcess
from support import wait_until

from sensornet.accounting import Window, device_account
from sensornet.bulk_publisher import BulkPublisher
from sensornet.codec import MAX_READINGS_PER_MESSAGE
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet

pytestmark = pytest.mark.timeout(300)

SENSOR = DeviceInfo("P", "air_quality", "jingansi", 31.22, 121.45, "active", "GW-P")
PEAK_RSS_LIMIT = 300 * 1024 * 1024
STRING_FIELD_LIMIT = 64 * 1024  # InfluxDB 1.x's longest string field value


# The most refused items per byte: 10,000 items in 20 kB, ~50 such messages to a batch.
DENSEST = b"[" + b",".join([b"1"] * MAX_READINGS_PER_MESSAGE) + b"]"


def worst_pack(max_bytes: int, n: int) -> bytes:
    """As many items as the codec takes, each refused (pm25 below its range), padded to
    the largest payload the ingester takes."""
    items = b",".join([b'{"sensor":"P","pm25":-1}'] * MAX_READINGS_PER_MESSAGE)
    head, tail = b'{"readings":[' + items + b'],"gw":"', b'"}'
    pad = max_bytes - len(head) - len(tail)
    assert pad >= 0
    pad_text = (b"%d-" % n) * pad
    return head + pad_text[:pad] + tail


async def test_poison_packs_cost_memory_once_per_message_and_the_next_reading_is_stored(
    settings: Settings, influx: InfluxClient
) -> None:
    await register_fleet(settings, [SENSOR])
    p = settings.topic_prefix
    packs = [worst_pack(settings.ingest_max_payload_bytes, n) for n in range(3)]
    assert all(len(pack) == settings.ingest_max_payload_bytes for pack in packs)
    dense = 60  # more than a batch's worth (settings.ingest_batch_bytes)
    assert dense * len(DENSEST) > settings.ingest_batch_bytes
    stream = [(f"{p}/GW-P/pack".encode(), pack) for pack in packs]
    stream += [(f"{p}/P/readings".encode(), DENSEST)] * dense
    stream.append((f"{p}/P/readings".encode(), orjson.dumps({"seq": 1, "pm25": 12.0})))
    expected = {
        "out_of_range": len(packs) * MAX_READINGS_PER_MESSAGE,
        "bad_shape": dense * MAX_READINGS_PER_MESSAGE,  # "array items must be objects"
    }
    # every letter of the test, beyond the API's row limit (docs/accounting.md)
    whole_test: dict[str, Any] = {"window": Window.recent(3600, 600), "max_rows": 10**6}
    # the heap cap only keeps a regression from taking the machine's memory with it
    ingester = IngesterProcess(settings, data_limit_bytes=2 * 1024**3)
    ingester.start()
    try:
        await wait_until(lambda: _subscribed(ingester), timeout_s=60)
        blaster = BulkPublisher(
            settings.mqtt_host,
            settings.mqtt_port,
            "poison",
            "simulator",
            settings.fleet_password(),
        )
        await blaster.publish_all(stream)

        async def stored() -> bool:
            assert ingester.proc is not None and ingester.proc.poll() is None, "ingester died"
            return bool(rows(await influx.query('SELECT * FROM "air_quality"')))

        await wait_until(stored, timeout_s=180, interval_s=0.5)

        async def accounted() -> bool:  # a cheap count while they land; the account once
            counts = await influx.query(
                'SELECT count("payload_bytes") FROM "dead_letter" WHERE "device" = $id '
                'GROUP BY "reason"',
                {"id": SENSOR.id},
            )
            return {c["tags"]["reason"]: c["values"][0][1] for c in counts} == expected

        await wait_until(accounted, timeout_s=120, interval_s=1.0)
        peak = ingester.status("VmHWM")
        assert peak < PEAK_RSS_LIMIT, f"ingester peak RSS {peak / 2**20:.0f} MiB"
    finally:
        ingester.stop()
    account = await device_account(influx, SENSOR.id, SENSOR.type, **whole_test)
    assert (account.stored, account.rejected_total) == (1, sum(expected.values()))
    # each message kept once, as a bounded excerpt and the hash of the whole of it (the
    # same message again in a batch, once for all); every letter names its message by it
    kept = rows(
        await influx.query(
            'SELECT "payload_b64", "payload_sha256" FROM "dead_letter" WHERE "payload_b64" != \'\''
        )
    )
    hashes = Counter(str(r["payload_sha256"]) for r in kept)
    assert set(hashes) == {hashlib.sha256(payload).hexdigest() for _, payload in stream[:-1]}
    assert all(hashes[hashlib.sha256(pack).hexdigest()] == 1 for pack in packs)
    assert hashes[hashlib.sha256(DENSEST).hexdigest()] <= dense
    assert all(len(str(r["payload_b64"])) < STRING_FIELD_LIMIT for r in kept)
    named = rows(await influx.query('SELECT count("payload_sha256") FROM "dead_letter"'))
    assert named[0]["count"] == sum(expected.values())


async def _subscribed(ingester: IngesterProcess) -> bool:
    # the ingester says "receiving" once every input is ready (MQTT: the SUBACK came)
    return ingester.log.exists() and " receiving (" in ingester.log.read_text()
