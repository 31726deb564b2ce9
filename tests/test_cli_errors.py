"""Ordinary commands that fail for ordinary reasons say so in one line and an exit code,
never with a traceback (``--debug`` keeps it). Each runs the real ``sensornet`` command
as a subprocess, against real services where the failure needs one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ingester_process import IngesterProcess
from support import wait_until

from sensornet.settings import Settings
from wiring.services import Mosquitto, free_port

GBK_CSV = (
    "id,type,subdistrict,lat,lon,status,address,description,mounting,installed_on,"
    "commissioned_on,owner_department,firmware,gateway_id\r\n"
    "AQ-GBK01,air_quality,jingansi,31.2236,121.4468,planned,南京西路1699号,寺门前,"
    "pole,,,静安区生态环境局,,\r\n"
)


def sensornet(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with exit 1 and said why on one line of stderr."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert result.returncode == 1, (result.returncode, result.stderr)
    return errors[0]


def state(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"SENSORNET_STATE_DIR": str(tmp_path / "state"), **extra}


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    result = sensornet("registry", "import", str(tmp_path / "nope.csv"), env=state(tmp_path))
    one_clear_line(result, "no such file", "nope.csv")


def test_import_of_a_gbk_csv_says_which_encoding_it_read(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    path.write_bytes(GBK_CSV.encode("gbk"))
    result = sensornet("registry", "import", str(path), env=state(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "GBK/GB18030" in result.stderr
    assert '"encoding": "GBK/GB18030"' in result.stdout
    shown = sensornet("registry", "get", "AQ-GBK01", env=state(tmp_path))
    assert "南京西路1699号" in shown.stdout
    assert "静安区生态环境局" in shown.stdout


def test_storage_commands_with_influxdb_down(tmp_path: Path) -> None:
    down = state(tmp_path, SENSORNET_INFLUX_URL=f"http://127.0.0.1:{free_port()}")
    one_clear_line(sensornet("storage", "apply", env=down), "InfluxDB", "unreachable")
    window = ["--start", "2026-12-01T00:00:00+08:00", "--end", "2026-12-02T00:00:00+08:00"]
    one_clear_line(sensornet("storage", "backfill", *window, env=down), "InfluxDB", "unreachable")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = sensornet("--debug", "registry", "import", str(tmp_path / "nope.csv"))
    assert "Traceback" in result.stderr
    assert result.returncode == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "htp:/no such url"])
def test_dashboards_push_to_a_bad_grafana(tmp_path: Path, url: str) -> None:
    result = sensornet(
        "dashboards", "push", "--url", url.format(port=free_port()), env=state(tmp_path)
    )
    one_clear_line(result, "Grafana")


def test_a_setting_that_does_not_validate(tmp_path: Path) -> None:
    result = sensornet("registry", "list", env=state(tmp_path, SENSORNET_API_PORT="eighty"))
    line = one_clear_line(result, "SENSORNET_API_PORT", "eighty")
    assert "pydantic" not in line


def test_registry_in_a_state_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    env = {"SENSORNET_STATE_DIR": str(tmp_path / "not" / "yet")}
    result = sensornet("registry", "list", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "not" / "yet" / "registry.db").exists()


def test_registry_database_unreachable(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://u:secret@127.0.0.1:{free_port()}/x"
    line = one_clear_line(
        sensornet("registry", "list", env=state(tmp_path, SENSORNET_REGISTRY_URL=url)),
        "registry database",
    )
    assert "secret" not in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("registry", "list", "--limit", "-5"), ("--limit",)),
        (("simulate", "--speed", "-1"), ("--speed", "greater than 0")),
        (("simulate", "--faults", "2"), ("--faults", "between 0 and 1")),
        (("simulate", "--http-share", "1.5"), ("--http-share", "between 0 and 1")),
        (("simulate", "--http-share", "0.2"), ("--http-share", "SENSORNET_INGEST_INPUTS")),
        (("simulate", "--mode", "load", "--http-share", "0.2"), ("--http-share", "live")),
    ],
)
def test_flags_are_checked_at_the_edge(
    tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    result = sensornet(*args, env=state(tmp_path))
    assert result.returncode == 2, result.stderr  # a usage error, as click reports them
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_coordinates_outside_the_district(tmp_path: Path) -> None:
    args = ["registry", "register", "AQ-NULLISLAND", "--type", "air_quality"]
    args += ["--subdistrict", "jingansi", "--lat", "0", "--lon", "0"]
    result = sensornet(*args, env=state(tmp_path))
    one_clear_line(result, "outside", "Jing'an")
    swapped = [*args[:-4], "--lat", "121.4468", "--lon", "31.2236"]
    one_clear_line(sensornet(*swapped, env=state(tmp_path)), "lat", "121.4468")


async def test_ingest_retries_until_the_broker_comes_up(
    settings: Settings, broker: Mosquitto
) -> None:
    broker.stop()
    log = settings.state_dir / "ingest.log"
    env = IngesterProcess(
        settings, extra_env={"SENSORNET_INGEST_METRICS_PORT": str(free_port())}
    ).env()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "ingest", "--verbose",
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        async def logged(text: str) -> bool:
            return text in log.read_text()

        await wait_until(lambda: logged("unreachable"), timeout_s=30)
        assert proc.returncode is None  # still running, retrying
        broker.start()
        await wait_until(lambda: logged("receiving"), timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text


def test_simulate_in_a_state_folder_that_does_not_exist(tmp_path: Path) -> None:
    """The folder is made (it held the registry's SQLite file, whose open failed with a
    traceback); with no broker running from it, one line says to start one."""
    env = {"SENSORNET_STATE_DIR": str(tmp_path / "new" / "state")}
    result = sensornet("simulate", "--sensors", "2", "--rounds", "1", env=env)
    one_clear_line(result, "broker")
    assert (tmp_path / "new" / "state" / "registry.db").exists()
