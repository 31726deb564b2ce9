"""Schemathesis fuzzes every operation of the real API (real port, real registry and
InfluxDB) from its OpenAPI schema: nothing may answer 5xx. Bounded: a few examples per
operation, derandomised, so the run is short and repeatable."""

from __future__ import annotations

import asyncio

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from support import running

from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from wiring.parts import run_api

EXAMPLES_PER_OPERATION = 12


def fuzz(base: str, headers: dict[str, str]) -> tuple[list[str], dict[int, int]]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, headers=headers, timeout=10)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        check()
    return failures, statuses


async def test_no_operation_answers_5xx(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    admin = {"Authorization": f"Bearer {api_keys['admin']}"}
    async with running(run_api, settings):
        failures, statuses = await asyncio.to_thread(fuzz, base, admin)
    assert failures == []
    assert sum(statuses.values()) > 100  # it really called the API
    assert any(200 <= s < 300 for s in statuses), statuses  # and got past auth
