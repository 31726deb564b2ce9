"""Whose account a refusal lands in, through the real broker, ingester and InfluxDB: the
publisher's (the topic's id, the authenticated one), an item's sensor only when the
publisher may report for it, and one ``_unknown`` tag for every id the registry does not
know, so made-up ids cannot grow the series count (docs/payloads.md)."""

from __future__ import annotations

import orjson
from support import running, wait_until

from sensornet.accounting import Window, device_account
from sensornet.bulk_publisher import BulkPublisher
from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester

MINE = DeviceInfo("AQ-1", "air_quality", "jingansi", 31.22, 121.45, "active", "GW-1")
OTHER = DeviceInfo("AQ-2", "air_quality", "beizhan", 31.25, 121.46, "active", "GW-2")
PUBLISHER = DeviceInfo("SL-1", "street_light", "beizhan", 31.25, 121.46, "active")
MADE_UP = 40


async def test_refusals_are_booked_under_the_publisher_and_unknown_ids_share_one_tag(
    settings: Settings, influx: InfluxClient
) -> None:
    await register_fleet(settings, [MINE, OTHER, PUBLISHER])
    p = settings.topic_prefix
    stream = [
        (f"{p}/X-{i}/readings".encode(), orjson.dumps({"seq": i, "pm25": 1.0}))
        for i in range(MADE_UP)
    ]
    pack = {
        "gw": "SL-1",
        "readings": [
            {"sensor": "AQ-2", "seq": 7, "pm25": 1.0},  # another gateway's sensor
            {"sensor": "AQ-2", "seq": 8, "pm25": -1.0},
            {"sensor": "AQ-2", "ts": "yesterday", "pm25": 1.0},  # refused by the codec
            {"sensor": "NOPE-9", "seq": 9, "pm25": 1.0},  # no such sensor
        ],
    }
    stream.append((f"{p}/SL-1/pack".encode(), orjson.dumps(pack)))
    # on a readings topic an item may not name a sensor at all
    stream.append((f"{p}/SL-1/readings".encode(), b'[{"sensor": "AQ-2", "seq": 10, "power": 1}]'))
    # GW-1 is AQ-1's gateway: AQ-1's refused reading is AQ-1's, even from a gateway
    own = {"gw": "GW-1", "readings": [{"sensor": "AQ-1", "seq": 3, "pm25": -1.0}]}
    stream.append((f"{p}/GW-1/pack".encode(), orjson.dumps(own)))
    expected = MADE_UP + len(pack["readings"]) + 2
    async with running(run_ingester, settings):
        blaster = BulkPublisher(
            settings.mqtt_host,
            settings.mqtt_port,
            "identity",
            "simulator",
            settings.fleet_password(),
        )
        await blaster.publish_all(stream)

        async def letters() -> list[dict[str, object]]:
            found = rows(await influx.query('SELECT * FROM "dead_letter"'))
            return found if len(found) >= expected else []

        found = await wait_until(letters, timeout_s=60)
    assert len(found) == expected
    tags = await influx.query('SHOW TAG VALUES FROM "dead_letter" WITH KEY = "device"')
    assert sorted(v[1] for v in tags[0]["values"]) == ["AQ-1", "SL-1", "_unknown"]
    unknown = [r for r in found if r["device"] == "_unknown"]
    assert sorted(str(r["device_raw"]) for r in unknown) == sorted(f"X-{i}" for i in range(MADE_UP))
    booked = sorted(
        (str(r["device"]), str(r["reason"]), str(r["device_raw"]), r["seq"])
        for r in found
        if r["device"] != "_unknown"
    )
    assert booked == [
        ("AQ-1", "out_of_range", "None", 3),
        ("SL-1", "bad_shape", "AQ-2", None),
        ("SL-1", "bad_timestamp", "AQ-2", None),
        ("SL-1", "foreign_gateway", "AQ-2", 7),
        ("SL-1", "foreign_gateway", "AQ-2", 8),
        ("SL-1", "unknown_sensor", "NOPE-9", 9),
    ]
    # nothing SL-1 sent reached AQ-2's account: not its counts, not its seq range
    other = await device_account(influx, OTHER.id, OTHER.type, Window.recent(3600, 60))
    assert (other.rejected, other.first_seq, other.last_seq) == ({}, None, None)
