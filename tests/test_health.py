"""``/health`` tells the truth: 200 only when the broker, InfluxDB and the registry all
answer, 503 naming what is down otherwise (a load balancer reads the status, not the body)."""

from __future__ import annotations

import httpx
from support import running

from sensornet.settings import Settings
from wiring.parts import run_api
from wiring.services import Mosquitto, free_port


async def test_health_is_503_naming_each_dependency_down(
    settings: Settings, broker: Mosquitto
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        ok = await http.get("/health")
        assert ok.status_code == 200
        assert ok.json()["down"] == []
        broker.stop()
        answer = await http.get("/health")
        assert answer.status_code == 503
        assert answer.json()["status"] == "down"
        assert answer.json()["down"] == ["broker"]

    nowhere = settings.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})
    async with running(run_api, nowhere), httpx.AsyncClient(base_url=base) as http:
        answer = await http.get("/health")
        assert answer.status_code == 503
        assert answer.json()["down"] == ["broker", "influxdb"]
