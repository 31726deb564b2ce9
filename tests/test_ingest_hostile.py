"""Hostile ids and values reach the real ingester and the real InfluxDB: nothing leaks into
a second line or an extra tag, and every refusal is a dead letter with its reason."""

from __future__ import annotations

import orjson
from support import mqtt_client, running, wait_until

from sensornet.influx import InfluxClient, rows
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import register_fleet, run_ingester

GOOD = DeviceInfo("SL-1", "street_light", "jingansi", 31.22, 121.45, "active")


async def publish_all(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    password = settings.fleet_password()
    async with mqtt_client("hostile-test", settings.mqtt_port, "simulator", password) as client:
        for topic, payload in messages:
            client.publish(topic, payload)
        await client.acked()


async def test_hostile_strings_never_split_lines_or_add_tags(
    settings: Settings, influx: InfluxClient
) -> None:
    await register_fleet(settings, [GOOD])
    p = settings.topic_prefix
    # A control character in a topic never gets this far: Mosquitto drops the connection.
    hostile_ids = ["a,b=c", "x y", 'q"uote', "back\\slash", "SL-1,subdistrict=evil", "é=1 x"]
    messages = [(f"{p}/{h}/readings", b'{"power": 10.0}') for h in hostile_ids]
    hostile_modes = ['auto" x=1', "auto\nstreet_light,sensor_id=X power=1", "auto\\", "a,b=c d"]
    messages += [
        (f"{p}/SL-1/readings", orjson.dumps({"mode": m, "power": 1.0, "seq": i}))
        for i, m in enumerate(hostile_modes)
    ]
    messages.append((f"{p}/SL-1/readings", b'{"mode": "auto", "power": 42.0, "seq": 99}'))

    async with running(run_ingester, settings):
        await publish_all(settings, messages)

        async def dead_letters() -> list[dict[str, object]]:
            found = rows(await influx.query('SELECT * FROM "dead_letter"'))
            return found if len(found) == len(messages) - 1 else []

        letters = await wait_until(dead_letters)

    stored = rows(await influx.query('SELECT * FROM "street_light"'))
    assert [(r["sensor_id"], r["subdistrict"], r["mode"], r["power"]) for r in stored] == [
        ("SL-1", "jingansi", "auto", 42.0)
    ]
    tag_keys = await influx.query('SHOW TAG KEYS FROM "street_light"')
    assert sorted(v[0] for v in tag_keys[0]["values"]) == ["sensor_id", "subdistrict"]
    series = rows(await influx.query("SHOW SERIES"))
    assert all("evil" not in str(s) and s != "X" for s in series)
    reasons = sorted(str(r["reason"]) for r in letters)
    assert reasons == sorted(["unknown_sensor"] * len(hostile_ids) + ["not_allowed"] * 4)
    # one tag for every id the registry does not know, the raw (printable) id in a field
    assert {r["device"] for r in letters} == {"SL-1", "_unknown"}
    unknown = sorted(str(r["device_raw"]) for r in letters if r["device"] == "_unknown")
    assert unknown == sorted(h.replace("\\", "?") for h in hostile_ids)
