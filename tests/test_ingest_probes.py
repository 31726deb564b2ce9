"""The ingester's liveness and readiness probes, on its metrics port: live while its event
loop runs; ready while it receives and can make batches durable, 503 naming the failing
check when InfluxDB refuses its writes, ready again when InfluxDB accepts them."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from faultproxy import FaultProxy
from support import running, wait_until
from test_faults import publish, replace_settings

from sensornet.influx import InfluxClient
from sensornet.probe_server import loop_responds
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_ingester
from wiring.services import free_port

pytestmark = pytest.mark.timeout(180)


async def probe(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"http://127.0.0.1:{port}{path}")


async def test_ready_names_what_fails_and_recovers(
    settings: Settings, influx: InfluxClient
) -> None:
    fleet = default_fleet(20)
    await register_fleet(settings, fleet)
    async with FaultProxy(settings.influx_url).serving() as proxy:
        ingest = replace_settings(
            settings,
            ingest_metrics_port=free_port(),
            influx_url=f"http://127.0.0.1:{proxy.port}",
        )
        port = ingest.ingest_metrics_port
        async with running(run_ingester, ingest):
            live = await probe(port, "/livez")
            assert live.status_code == 200
            assert live.json()["checks"] == {"event_loop": True}

            async def ready() -> bool:
                return (await probe(port, "/readyz")).status_code == 200

            await wait_until(ready, timeout_s=30)
            assert "sensornet_ingest_stored" in (await probe(port, "/metrics")).text

            proxy.answer(403)  # InfluxDB refuses the ingester's writes: an operator must act
            await publish(settings, fleet, 200)

            async def refusing() -> httpx.Response | None:
                answer = await probe(port, "/readyz")
                return answer if answer.status_code == 503 else None

            answer = await wait_until(refusing, timeout_s=60)
            assert answer.json()["failing"] == ["influxdb_accepts_writes"]
            assert (await probe(port, "/livez")).status_code == 200  # a restart cures nothing

            proxy.set_mode("ok")
            await wait_until(ready, timeout_s=90)


async def test_a_blocked_event_loop_is_not_live() -> None:
    loop = asyncio.get_running_loop()
    assert await asyncio.to_thread(loop_responds, loop, 2.0)

    def ask() -> bool:
        return loop_responds(loop, 0.5)

    asking = asyncio.get_running_loop().run_in_executor(None, ask)
    time.sleep(1.0)  # noqa: ASYNC251 - the loop is stuck, as a wedged process's would be
    assert await asking is False
