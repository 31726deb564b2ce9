"""The HTTP input over a real socket, with a real ingester, registry and InfluxDB:
devices push with their registry credentials, integrations with their token; every 2xx
comes after the readings are durable (InfluxDB down: spooled first); refusals are answered
4xx problem+json with the reason and kept as dead letters; retries are idempotent."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import httpx
import orjson
import pytest
from faultproxy import FaultProxy
from pydantic import SecretStr
from support import mqtt_client, running, wait_until

from sensornet.broker_auth import issue_credentials
from sensornet.influx import InfluxClient
from sensornet.registry.store import DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings
from wiring.parts import run_ingester
from wiring.services import free_port

TOKEN = "op-token-0123456789"
FLEET = [
    DeviceInfo("AQ-H1", "air_quality", "jingansi", 31.22, 121.45, "active"),
    DeviceInfo("AQ-H2", "air_quality", "jingansi", 31.22, 121.45, "active"),
]


@pytest.fixture
def http_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "ingest_inputs": ["http"],
            "ingest_http_port": free_port(),
            "ingest_http_max_body_bytes": 64 * 1024,
            "ingest_max_payload_bytes": 16 * 1024,
            "ingest_http_integrations": {"nbiot-op": SecretStr(TOKEN)},
        }
    )


@pytest.fixture
async def passwords(http_settings: Settings) -> dict[str, str]:
    async with open_registry(http_settings.registry_database_url) as registry:
        await upsert_devices(registry, FLEET)
        return await issue_credentials(registry, [d.id for d in FLEET], "test")


@pytest.fixture
async def http(
    http_settings: Settings, passwords: dict[str, str], influx: InfluxClient
) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{http_settings.ingest_http_port}"
    async with running(run_ingester, http_settings), httpx.AsyncClient(base_url=base) as client:
        yield client


def auth(device: str, password: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(device, password)


async def stored(influx: InfluxClient, sensor: str) -> list[list[object]]:
    series = await influx.query(
        "SELECT pm25, seq FROM air_quality WHERE sensor_id = $s", params={"s": sensor}
    )
    return series[0]["values"] if series else []


async def letters(influx: InfluxClient, reason: str) -> int:
    series = await influx.query(
        "SELECT count(payload_bytes) FROM dead_letter WHERE reason = $r", params={"r": reason}
    )
    return int(series[0]["values"][0][1]) if series else 0


async def test_a_device_pushes_readings_and_they_are_durable_when_answered(
    http: httpx.AsyncClient, passwords: dict[str, str], influx: InfluxClient
) -> None:
    now = int(time.time())
    body = [{"ts": now - 200 + i, "seq": i, "pm25": 10.0 + i, "pm10": 20} for i in range(100)]
    r = await http.post(
        "/v1/devices/AQ-H1/readings", json=body, auth=auth("AQ-H1", passwords["AQ-H1"])
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"durable": True, "refused": 0}
    assert len(await stored(influx, "AQ-H1")) == 100  # already there: no waiting needed
    # SenML JSON and gzip take the same way in
    senml = [{"bn": "AQ-H1/", "bt": now, "n": "pm25", "v": 7.5}, {"n": "pm10", "v": 9}]
    r = await http.post(
        "/v1/devices/AQ-H1/readings",
        content=gzip.compress(orjson.dumps(senml)),
        headers={"content-type": "application/senml+json", "content-encoding": "gzip"},
        auth=auth("AQ-H1", passwords["AQ-H1"]),
    )
    assert r.status_code == 200, r.text
    assert (await stored(influx, "AQ-H1"))[-1][1:] == [7.5, None]
    # SenML CBOR (RFC 8428 section 6: bn -2, bt -3, n 0, v 2)
    pack = cbor2.dumps([{-2: "AQ-H1/", -3: now + 1, 0: "pm25", 2: 8.5}])
    r = await http.post(
        "/v1/devices/AQ-H1/readings",
        content=pack,
        headers={"content-type": "application/senml+cbor"},
        auth=auth("AQ-H1", passwords["AQ-H1"]),
    )
    assert r.status_code == 200, r.text
    assert (await stored(influx, "AQ-H1"))[-1][1:] == [8.5, None]
    # an integration's token may push for any registered device, on its native route
    r = await http.post(
        "/v1/devices/AQ-H2/readings",
        json={"ts": now, "seq": 1, "pm25": 3.0},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200, r.text
    assert len(await stored(influx, "AQ-H2")) == 1


async def test_refusals_are_problems_with_reasons_and_dead_letters(
    http: httpx.AsyncClient, passwords: dict[str, str], influx: InfluxClient
) -> None:
    h1 = auth("AQ-H1", passwords["AQ-H1"])
    now = int(time.time())
    # wrong types: 422, what was refused listed, the good reading stored
    body = [{"ts": now, "seq": 1, "pm25": "high"}, {"ts": now + 1, "seq": 2, "pm25": 4.0}]
    r = await http.post("/v1/devices/AQ-H1/readings", json=body, auth=h1)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["reason"] == "wrong_type" and problem["refused_total"] == 1
    assert problem["refused"][0]["seq"] == 1 and problem["durable"] is True
    assert [row[2] for row in await stored(influx, "AQ-H1")] == [2]
    assert await letters(influx, "wrong_type") == 1
    # not JSON at all, a reading of another sensor
    r = await http.post("/v1/devices/AQ-H1/readings", content=b"\x1f\x8b nope", auth=h1)
    assert r.status_code == 422 and r.json()["reason"] == "gzip"
    r = await http.post(
        "/v1/devices/AQ-H1/readings", json={"readings": [{"sensor": "AQ-H2", "pm25": 1}]}, auth=h1
    )
    assert r.status_code == 422
    # a pack item without its sensor id, on the device's own pack route
    r = await http.post("/v1/devices/AQ-H1/pack", json={"readings": [{"pm25": 1.0}]}, auth=h1)
    assert r.status_code == 422 and r.json()["reason"] == "bad_pack"
    # at the door: each with its status and reason, nothing delivered
    cases = [
        (await http.post("/v1/devices/AQ-H1/readings", json={"pm25": 1.0}), 401, "no_credentials"),
        (
            await http.post(
                "/v1/devices/AQ-H1/readings", json={"pm25": 1.0}, auth=auth("AQ-H1", "wrong")
            ),
            401,
            "bad_credentials",
        ),
        (
            await http.post(
                "/v1/devices/NOPE-1/readings", json={"pm25": 1.0}, auth=auth("NOPE-1", "x")
            ),
            401,
            "bad_credentials",
        ),
        (
            await http.post("/v1/devices/AQ-H2/readings", json={"pm25": 1.0}, auth=h1),
            403,
            "forbidden",
        ),
        (await http.post("/v1/devices//readings", json={"pm25": 1.0}, auth=h1), 404, "no_route"),
        (await http.get("/v1/devices/AQ-H1/readings", auth=h1), 405, "method"),
        (
            await http.post(
                "/v1/devices/AQ-H1/readings",
                content=b"pm25=1",
                headers={"content-type": "application/x-www-form-urlencoded"},
                auth=h1,
            ),
            415,
            "unsupported_media_type",
        ),
        (await http.post("/v1/devices/AQ-H1/readings", content=b"", auth=h1), 400, "no_values"),
        (
            await http.post(
                "/v1/devices/AQ-H1/readings", content=b"[" + b"1," * 9000 + b"1]", auth=h1
            ),
            413,
            "oversize",
        ),
        (
            await http.post(
                "/v1/integrations/nbiot-op/no-such-format",
                content=b"{}",
                headers={"authorization": f"Bearer {TOKEN}"},
            ),
            404,
            "unknown_format",
        ),
        (
            await http.post(
                "/v1/integrations/other-op/x",
                content=b"{}",
                headers={"authorization": f"Bearer {TOKEN}"},
            ),
            403,
            "forbidden",
        ),
    ]
    for response, status, reason in cases:
        assert (response.status_code, response.json()["reason"]) == (status, reason), response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert cases[0][0].headers["www-authenticate"].startswith("Basic")
    # larger than the listener takes at all: 413 before the body is read
    r = await http.post("/v1/devices/AQ-H1/readings", content=b"x" * (65 * 1024), auth=h1)
    assert r.status_code == 413
    # the ingester still answers, and stored nothing of the refused requests
    assert (await http.get("/healthz")).json()["status"] == "ok"
    assert [row[2] for row in await stored(influx, "AQ-H1")] == [2]


async def test_credentials_work_the_moment_they_are_issued(
    http_settings: Settings, passwords: dict[str, str], influx: InfluxClient
) -> None:
    """A device registered and given credentials while the ingester runs pushes at once
    (the input's credential cache, refreshed every 2 s, does not know it yet: the registry
    is asked before answering 401); a rotated password works at once and the old one is
    refused; a storm of wrong passwords asks the registry once per device, not per request."""
    http_settings = http_settings.model_copy(update={"ingest_metrics_port": free_port()})
    base = f"http://127.0.0.1:{http_settings.ingest_http_port}"
    metrics_url = f"http://127.0.0.1:{http_settings.ingest_metrics_port}/metrics"

    async def lookups(client: httpx.AsyncClient) -> float:
        text = (await client.get(metrics_url)).text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith("sensornet_ingest_http_registry_lookups_total")
        )
        return float(line.split()[-1])

    async with (
        running(run_ingester, http_settings),
        httpx.AsyncClient(base_url=base) as client,
        open_registry(http_settings.registry_database_url) as registry,
    ):
        now = int(time.time())
        for k in range(3):  # three times, so no lucky refresh in between can pass it
            device = f"AQ-NEW{k}"
            await upsert_devices(registry, [DeviceInfo(device, "air_quality", "jingansi",
                                                       31.22, 121.45, "active")])  # fmt: skip
            password = (await issue_credentials(registry, [device], "test"))[device]
            r = await client.post(f"/v1/devices/{device}/readings", auth=auth(device, password),
                                  json={"ts": now, "seq": 1, "pm25": 3.0})  # fmt: skip
            assert r.status_code == 200, r.text
            assert [row[2] for row in await stored(influx, device)] == [1]

        # several requests of a device at once, its very first ones: each waits for the
        # one registry read instead of being refused while it runs
        await upsert_devices(
            registry, [DeviceInfo("AQ-BURST", "air_quality", "jingansi", 31.22, 121.45, "active")]
        )
        password = (await issue_credentials(registry, ["AQ-BURST"], "test"))["AQ-BURST"]
        burst = [
            client.post(
                "/v1/devices/AQ-BURST/readings",
                auth=auth("AQ-BURST", password),
                json={"ts": now, "seq": seq, "pm25": 2.0},
            )
            for seq in range(6)
        ]
        assert [r.status_code for r in await asyncio.gather(*burst)] == [200] * 6

        rotated = (await issue_credentials(registry, ["AQ-H1"], "test"))["AQ-H1"]
        r = await client.post("/v1/devices/AQ-H1/readings", auth=auth("AQ-H1", rotated),
                              json={"ts": now, "seq": 7, "pm25": 4.0})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await client.post("/v1/devices/AQ-H1/readings", auth=auth("AQ-H1", passwords["AQ-H1"]),
                              json={"ts": now + 1, "seq": 8, "pm25": 4.0})  # fmt: skip
        assert r.status_code == 401 and r.json()["reason"] == "bad_credentials", r.text

        before = await lookups(client)
        storm = [
            client.post(
                "/v1/devices/AQ-H2/readings", auth=auth("AQ-H2", f"guess-{i}"), json={"pm25": 1.0}
            )
            for i in range(40)
        ]
        answers = await asyncio.gather(*storm)
        assert {a.status_code for a in answers} == {401}
        assert await lookups(client) - before <= 1  # once for AQ-H2 in 5 s, whatever came
    assert [row[2] for row in await stored(influx, "AQ-H1")] == [7]


async def test_retries_are_idempotent(
    http: httpx.AsyncClient, passwords: dict[str, str], influx: InfluxClient
) -> None:
    h1 = auth("AQ-H1", passwords["AQ-H1"])
    # no ts: stamped on arrival, so only the key tells a retry from a new reading
    first = await http.post(
        "/v1/devices/AQ-H1/readings", json={"seq": 5, "pm25": 5.0}, auth=h1,
        headers={"idempotency-key": "k-1"},
    )  # fmt: skip
    again = await http.post(
        "/v1/devices/AQ-H1/readings", json={"seq": 5, "pm25": 5.0}, auth=h1,
        headers={"idempotency-key": "k-1"},
    )  # fmt: skip
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await stored(influx, "AQ-H1")) == 1
    reused = await http.post(
        "/v1/devices/AQ-H1/readings", json={"seq": 6, "pm25": 6.0}, auth=h1,
        headers={"idempotency-key": "k-1"},
    )  # fmt: skip
    assert reused.status_code == 422 and reused.json()["reason"] == "idempotency_key_reused"
    # with the device's own ts, a plain retry overwrites itself
    body = {"ts": int(time.time()) - 5, "seq": 7, "pm25": 7.0}
    for _ in range(3):
        r = await http.post("/v1/devices/AQ-H1/readings", json=body, auth=h1)
        assert r.status_code == 200
    assert [row[2] for row in await stored(influx, "AQ-H1")].count(7) == 1
    # concurrent retries of one key: delivered once
    results = await asyncio.gather(
        *[
            http.post(
                "/v1/devices/AQ-H1/readings",
                json={"seq": 8, "pm25": 8.0},
                auth=h1,
                headers={"idempotency-key": "k-2"},
            )
            for _ in range(5)
        ]
    )
    assert {r.status_code for r in results} == {200}
    assert [row[2] for row in await stored(influx, "AQ-H1")].count(8) == 1


async def test_influxdb_down_readings_spooled_before_the_answer(
    http_settings: Settings, passwords: dict[str, str], influx: InfluxClient, tmp_path: Path
) -> None:
    async with FaultProxy(http_settings.influx_url).serving() as proxy:
        settings = http_settings.model_copy(update={"influx_url": f"http://127.0.0.1:{proxy.port}"})
        base = f"http://127.0.0.1:{settings.ingest_http_port}"
        async with (
            running(run_ingester, settings),
            httpx.AsyncClient(base_url=base, timeout=60) as http,
        ):
            proxy.set_mode("error")
            now = int(time.time())
            body = [{"ts": now - i, "seq": i, "pm25": 1.0 + i} for i in range(50)]
            r = await http.post(
                "/v1/devices/AQ-H2/readings", json=body, auth=auth("AQ-H2", passwords["AQ-H2"])
            )
            assert r.status_code == 200, r.text  # durable: in the spool, not in InfluxDB
            spool = settings.state_dir / "spool" / settings.ingest_client_id
            assert any(spool.glob("*.lp"))
            assert await stored(influx, "AQ-H2") == []
            proxy.set_mode("ok")  # the spool is replayed

            async def replayed() -> bool:
                return len(await stored(influx, "AQ-H2")) == 50

            await wait_until(replayed, timeout_s=60)


@pytest.mark.parametrize(
    ("limits", "busy"),
    [
        ({"ingest_batch_bytes": 300, "ingest_http_max_waiting": 1000}, 503),  # paused
        ({"ingest_batch_bytes": 10**6, "ingest_http_max_waiting": 4}, 429),  # too many wait
    ],
)
async def test_backpressure_is_answered_and_retries_then_store_everything_once(
    http_settings: Settings,
    passwords: dict[str, str],
    influx: InfluxClient,
    limits: dict[str, int],
    busy: int,
) -> None:
    """InfluxDB hangs with one write in flight: requests wait, then the input answers
    ``busy`` with Retry-After instead of holding more; once InfluxDB answers, every
    request retried until 200 is stored exactly once."""
    async with FaultProxy(http_settings.influx_url).serving() as proxy:
        settings = http_settings.model_copy(
            update={
                "influx_url": f"http://127.0.0.1:{proxy.port}",
                "influx_timeout_s": 30.0,
                "ingest_writes_in_flight": 1,
                **limits,
            }
        )
        base = f"http://127.0.0.1:{settings.ingest_http_port}"
        h2 = auth("AQ-H2", passwords["AQ-H2"])
        now = int(time.time())
        bodies = [
            [{"ts": now - 100 + i, "seq": i, "pm25": 1.0, "pm10": 2.0, "no2": 3.0}]
            for i in range(12)
        ]
        seen: list[int] = []
        async with (
            running(run_ingester, settings),
            httpx.AsyncClient(base_url=base, timeout=60) as http,
        ):
            proxy.set_mode("hang")

            async def push(body: list[dict[str, float]]) -> None:
                while True:
                    r = await http.post("/v1/devices/AQ-H2/readings", json=body, auth=h2)
                    seen.append(r.status_code)
                    if r.status_code == 200:
                        return
                    assert r.status_code == busy, r.text
                    assert r.headers["retry-after"] == "1"
                    await asyncio.sleep(0.2)

            pushing = asyncio.gather(*(push(body) for body in bodies))

            async def refused_some() -> bool:
                return busy in seen

            await wait_until(refused_some, timeout_s=20)
            assert 200 not in seen  # nothing answered while nothing is durable
            proxy.set_mode("ok")
            await asyncio.wait_for(pushing, 60)
        assert seen.count(200) == len(bodies)
        assert sorted(row[2] for row in await stored(influx, "AQ-H2")) == list(range(12))


async def test_mqtt_and_http_inputs_share_batches_and_each_acks_its_own(
    http_settings: Settings, passwords: dict[str, str], influx: InfluxClient
) -> None:
    """Both inputs in one ingester: batches mix their messages, and each input
    acknowledges only its own (PUBACKs to the broker, answers to the HTTP senders)."""
    settings = http_settings.model_copy(update={"ingest_inputs": ["mqtt", "http"]})
    base = f"http://127.0.0.1:{settings.ingest_http_port}"
    now = int(time.time())
    topic = f"{settings.topic_prefix}/AQ-H1/readings"
    async with (
        running(run_ingester, settings),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        mqtt_client("mixed", settings.mqtt_port, "simulator", settings.fleet_password()) as mqtt,
    ):
        for i in range(50):
            mqtt.publish(topic, orjson.dumps({"ts": now - 100 + i, "seq": i, "pm25": 1.0}))
        answers = await asyncio.gather(
            *[
                http.post(
                    "/v1/devices/AQ-H2/readings",
                    json={"ts": now - 100 + i, "seq": i, "pm25": 2.0},
                    auth=auth("AQ-H2", passwords["AQ-H2"]),
                )
                for i in range(50)
            ]
        )
        await mqtt.acked()
        assert {r.status_code for r in answers} == {200}
        assert len(await stored(influx, "AQ-H2")) == 50  # answered: already durable

        async def mqtt_stored() -> bool:
            return len(await stored(influx, "AQ-H1")) == 50

        await wait_until(mqtt_stored, timeout_s=30)
