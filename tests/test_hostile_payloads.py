"""The hostile-payload set: each case goes through the real broker, ingester and InfluxDB
and must end as a dead letter with the expected reason, while the good readings sent
among them are all stored."""

from __future__ import annotations

import time
from collections import Counter

import orjson
from support import running, wait_until

from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester

AQ = DeviceInfo("AQ-1", "air_quality", "jingansi", 31.22, 121.45, "active")
AQ2 = DeviceInfo("AQ-2", "air_quality", "jingansi", 31.22, 121.45, "active", "GW-1")
SL = DeviceInfo("SL-1", "street_light", "beizhan", 31.25, 121.46, "active")
TF = DeviceInfo("TF-1", "traffic_flow", "beizhan", 31.25, 121.46, "active")
RETIRED = DeviceInfo("RT-1", "air_quality", "beizhan", 31.25, 121.46, "retired")
PLANNED = DeviceInfo("PL-1", "air_quality", "beizhan", 31.25, 121.46, "planned")
# registered before its type left the catalogue (an upgrade renamed or dropped it)
ORPHAN = DeviceInfo("OT-1", "tram_counter", "beizhan", 31.25, 121.46, "active")
NOW = int(time.time())


def j(value: object) -> bytes:
    return orjson.dumps(value)


# (device in topic, topic kind, payload, expected reason)
CASES: list[tuple[str, str, bytes, str]] = [
    ("AQ-1", "readings", b"not json", "invalid_json"),
    ("AQ-1", "readings", b"", "invalid_json"),
    ("AQ-1", "readings", b'{"pm25": 1.0, "x": "\xff"}', "invalid_utf8"),
    ("AQ-1", "readings", b'{"pm25": NaN}', "invalid_json"),
    ("AQ-1", "readings", b'{"pm25": 1e999}', "invalid_json"),
    ("AQ-1", "readings", b"[]", "no_values"),
    ("AQ-1", "readings", b'"text"', "bad_shape"),
    ("AQ-1", "readings", b"42", "bad_shape"),
    ("AQ-1", "readings", b"null", "bad_shape"),
    ("AQ-1", "readings", b'{"ts": 1700000000}', "no_values"),
    ("AQ-1", "readings", b'{"values": 3}', "bad_shape"),
    ("AQ-1", "readings", b'{"a": {"b": {"c": {"d": {"e": 1}}}}}', "too_deep"),
    ("AQ-1", "readings", b"[" * 500 + b"]" * 500, "too_deep"),
    ("AQ-1", "readings", b'{"seq": -1, "pm25": 1.0}', "bad_seq"),
    ("AQ-1", "readings", b'{"seq": "7", "pm25": 1.0}', "bad_seq"),
    ("AQ-1", "readings", b'{"ts": "yesterday", "pm25": 1.0}', "bad_timestamp"),
    ("AQ-1", "readings", b'{"ts": true, "pm25": 1.0}', "bad_timestamp"),
    ("AQ-1", "readings", j({"ts": NOW + 86400, "pm25": 1.0}), "ts_future"),
    ("AQ-1", "readings", j({"ts": 1_000_000_000, "pm25": 1.0}), "ts_past"),
    ("AQ-1", "readings", j({"pm25": -5.0}), "out_of_range"),
    ("AQ-1", "readings", j({"pm25": 1e6}), "out_of_range"),
    ("AQ-1", "readings", j({"pm25": "12"}), "wrong_type"),
    ("AQ-1", "readings", j({"pm25": True}), "wrong_type"),
    ("TF-1", "readings", j({"count": 1.5}), "wrong_type"),
    ("AQ-1", "readings", j({"temperature": 20.0}), "unknown_quantity"),
    ("AQ-1", "readings", j({"pm25 ,x=1": 2.0}), "unknown_quantity"),
    ("AQ-1", "readings", j({"time": 2.0}), "unknown_quantity"),
    ("AQ-1", "readings", b'{"pm25": 1.0, "pm25": 2.0}', "duplicate_key"),
    ("AQ-1", "readings", b'{"pm25": 1.0, "x": "a:b", "x": 1}', "duplicate_key"),
    ("NOPE-1", "readings", j({"pm25": 1.0}), "unknown_sensor"),
    ("a,b=c d", "readings", j({"pm25": 1.0}), "unknown_sensor"),
    ("RT-1", "readings", j({"pm25": 1.0}), "sensor_retired"),
    ("PL-1", "readings", j({"pm25": 1.0}), "sensor_planned"),
    ("OT-1", "readings", j({"trams": 3}), "unknown_type"),
    ("AQ-1", "readings", b'{"pm25": ' + b"1" * 300_000 + b"}", "oversize"),
    ("AQ-1", "readings", j([{"pm25": 1.0}] * 10_001), "too_many"),
    ("SL-1", "readings", j({"mode": "disco"}), "not_allowed"),
    ("SL-1", "readings", j({"mode": 'auto" power=1'}), "not_allowed"),
    ("SL-1", "readings", j({"mode": "auto\nstreet_light,sensor_id=X power=1"}), "not_allowed"),
    ("AQ-1", "readings", j([{"n": "pm25", "v": "x"}]), "bad_senml"),
    ("AQ-1", "readings", j([{"bn": "SL-1/", "n": "power", "v": 1.0}]), "foreign_sensor"),
    ("GW-1", "pack", j({"readings": [{"pm25": 1.0}]}), "bad_pack"),
    ("GW-2", "pack", j({"readings": [{"sensor": "AQ-2", "pm25": 1.0}]}), "foreign_gateway"),
    ("NOPE-2", "status", b"online", "unknown_sensor"),
]

GOOD: list[tuple[str, str, bytes]] = [
    ("AQ-1", "readings", j({"seq": 1, "pm25": 10.5, "pm10": 20.0})),
    ("SL-1", "readings", j({"seq": 1, "mode": "auto", "power": 80.0, "on": True})),
    ("TF-1", "readings", j({"seq": 1, "count": 12, "mean_speed": 31.5})),
    ("GW-1", "pack", j({"readings": [{"sensor": "AQ-2", "seq": 1, "pm25": 3.0}]})),
    ("AQ-1", "readings", j([{"bn": "AQ-1/", "bt": NOW, "n": "pm25", "v": 11.0}])),
]


async def test_hostile_payloads_become_dead_letters_with_reasons(
    settings: Settings, influx: InfluxClient
) -> None:
    assert len(CASES) >= 30
    await register_fleet(settings, [AQ, AQ2, SL, TF, RETIRED, PLANNED, ORPHAN])
    p = settings.topic_prefix
    stream = []
    for i, (device, kind, payload, _) in enumerate(CASES):
        stream.append((f"{p}/{device}/{kind}".encode(), payload))
        if i % 9 == 0:  # good readings interleaved with the hostile ones
            device, kind, good = GOOD[(i // 9) % len(GOOD)]
            stream.append((f"{p}/{device}/{kind}".encode(), good))
    async with running(run_ingester, settings):
        blaster = BulkPublisher(
            settings.mqtt_host,
            settings.mqtt_port,
            "hostile",
            "simulator",
            settings.fleet_password(),
        )
        await blaster.publish_all(stream)

        async def letters() -> list[dict[str, object]]:
            found = rows(await influx.query('SELECT * FROM "dead_letter"'))
            return found if len(found) >= len(CASES) else []

        found = await wait_until(letters, timeout_s=30)
    got = Counter(str(r["reason"]) for r in found)
    assert got == Counter(reason for *_, reason in CASES)
    # booked under the registered publisher; every id the registry does not know (in the
    # topic or named by an item) under the one tag "_unknown", the raw id in a field
    registered = {"AQ-1", "TF-1", "SL-1", "RT-1", "PL-1", "OT-1", "GW-1"}  # GW-1: AQ-2's
    assert {r["device"] for r in found} <= registered | {"_unknown"}
    unknown = {r["device_raw"] for r in found if r["device"] == "_unknown"}
    assert unknown == {"NOPE-1", "a,b=c d", "AQ-2", "NOPE-2"}  # AQ-2: named by GW-2
    stored = {
        m: rows(await influx.query(f'SELECT * FROM "{m}"'))
        for m in ("air_quality", "street_light", "traffic_flow")
    }
    assert len(stored["air_quality"]) == 3  # AQ-1 flat + AQ-2 via pack + AQ-1 SenML
    assert len(stored["street_light"]) == 1 and len(stored["traffic_flow"]) == 1
    tag_keys = await influx.query('SHOW TAG KEYS FROM "air_quality"')
    assert sorted(v[0] for v in tag_keys[0]["values"]) == ["sensor_id", "subdistrict"]
