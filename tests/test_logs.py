"""Structured logs: with ``SENSORNET_LOG_FORMAT=json`` every line a process writes is one
JSON object, the API's carry the request's id (the caller's ``X-Request-ID`` or a new one,
sent back) and the ingester's the id of the batch they belong to. Real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys

import httpx
from ingester_process import IngesterProcess
from support import mqtt_client, wait_until

from sensornet.logs import JsonFormatter, batch_id
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet
from wiring.services import free_port


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed; one that is not JSON fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_record_with_an_exception_is_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("once",), None)
        record.exc_info = sys.exc_info()
    batch_id.set("ingester-1-7")
    record.batch_id = batch_id.get()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed once"
    assert entry["batch_id"] == "ingester-1-7"
    assert "ValueError: bad" in entry["exception"]


async def test_api_lines_are_json_with_the_request_id(settings: Settings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SENSORNET_STATE_DIR": str(settings.state_dir),
        "SENSORNET_LOG_FORMAT": "json",
        "SENSORNET_INFLUX_URL": settings.influx_url,
        "SENSORNET_MQTT_PORT": str(settings.mqtt_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "api", "--port", str(port),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def up() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(up, timeout_s=30)
            mine = await http.get("/health", headers={"X-Request-ID": "ops-ticket-4711"})
            assert mine.headers["x-request-id"] == "ops-ticket-4711"
            made = await http.get("/health", headers={"X-Request-ID": "no spaces; allowed"})
            new_id = made.headers["x-request-id"]
            assert len(new_id) == 32 and new_id != "no spaces; allowed"
    finally:
        proc.terminate()
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    entries = json_lines(err.decode())
    ids = {e.get("request_id") for e in entries if e["logger"] == "uvicorn.access"}
    assert {"ops-ticket-4711", new_id} <= ids
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)


async def test_ingester_lines_are_json_with_the_batch_id(settings: Settings) -> None:
    fleet = default_fleet(3)
    await register_fleet(settings, fleet)
    extra = {"SENSORNET_LOG_FORMAT": "json", "SENSORNET_INGEST_METRICS_PORT": str(free_port())}
    env = IngesterProcess(settings, extra_env=extra).env()
    log = settings.state_dir / "ingest.jsonl"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "ingest", "--verbose",
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        async def logged(word: str) -> bool:
            return word in log.read_text()

        await wait_until(lambda: logged("receiving"), timeout_s=30)
        device = fleet[0]
        topic = f"{settings.topic_prefix}/{device.id}/readings"
        async with mqtt_client(
            "log-test", settings.mqtt_port, settings.mqtt_fleet_user, settings.fleet_password()
        ) as client:
            client.publish(topic, b'{"not a reading')  # refused: logged in its batch
            await client.acked()
        await wait_until(lambda: logged("invalid_json"), timeout_s=30)
    finally:
        proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()
    entries = json_lines(log.read_text())
    refused = [e for e in entries if "invalid_json" in str(e["message"])]
    assert refused and str(refused[0]["batch_id"]).startswith(settings.ingest_client_id + "-")
