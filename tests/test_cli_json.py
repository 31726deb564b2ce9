"""``--json`` on every command: the real ``sensornet`` command as a subprocess, stdout
parsed as one JSON document, human text and progress bars on stderr only (issue 22)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from cli.common import add_json_flag
from cli.main import app
from sensornet.catalogue import load_catalogue
from sensornet.storage_layout import backfill_windows
from wiring.services import InfluxDB

PLACE = {"type": "air_quality", "subdistrict": "jingansi", "lat": 31.2236, "lon": 121.4468}
SENSORS = [{"id": f"AQ-JS{n:04d}", **PLACE} for n in range(1, 4)]


def sensornet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, "COLUMNS": "100", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def machine(result: subprocess.CompletedProcess[str]) -> Any:
    """Exit 0 and stdout is exactly one JSON document (nothing else on it)."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def leaves(command: Any, path: str = "") -> list[tuple[str, Any]]:
    if hasattr(command, "commands"):
        return [leaf for name, sub in command.commands.items()
                for leaf in leaves(sub, f"{path} {name}".strip())]  # fmt: skip
    return [(path, command)]


def test_every_command_takes_json() -> None:
    commands = leaves(typer.main.get_command(add_json_flag(app)))
    assert len(commands) > 30
    without = [
        name
        for name, command in commands
        if not any("--json" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert without == []
    runner = CliRunner()
    for name, _ in commands:  # every help page renders and lists the flag
        shown = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0 and "--json" in shown.stdout, (name, shown.output)


def test_registry_and_keys(tmp_path: Path) -> None:
    env = {"SENSORNET_STATE_DIR": str(tmp_path / "state")}
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps(SENSORS))
    imported = sensornet("registry", "import", str(batch), "--json", env=env)
    assert machine(imported)["created"] == len(SENSORS)
    # the bar went to stderr, and only there
    assert f"{len(SENSORS)}/{len(SENSORS)}" in imported.stderr
    assert "import batch.json" in imported.stderr
    page = machine(sensornet("registry", "list", "--json", env=env))
    assert [s["id"] for s in page["items"]] == [s["id"] for s in SENSORS]
    geojson = machine(sensornet("registry", "export", "--format", "geojson", "--json", env=env))
    assert len(geojson["features"]) == len(SENSORS)
    csv_on_stdout = sensornet("registry", "export", "--json", env=env)
    assert csv_on_stdout.returncode == 2
    assert csv_on_stdout.stdout == ""
    assert "--format geojson" in csv_on_stdout.stderr
    template = machine(sensornet("registry", "template", "--json", env=env))
    assert template["columns"][:3] == ["id", "type", "subdistrict"]
    assert template["csv"].startswith("id,type,subdistrict,")
    key = machine(sensornet("keys", "create", "--role", "viewer", "--json", env=env))
    assert key["role"] == "viewer" and key["key"]


def test_alarms_maintenance(tmp_path: Path) -> None:
    env = {"SENSORNET_STATE_DIR": str(tmp_path / "state")}
    start = ["alarms", "maintenance", "start", "--subdistrict", "jingansi", "--hours", "1"]
    window = machine(sensornet(*start, "--json", env=env))
    assert window["subdistrict"] == "jingansi"


def test_storage_apply_and_backfill_progress_on_stderr(tmp_path: Path, influxd: InfluxDB) -> None:
    env = {
        "SENSORNET_STATE_DIR": str(tmp_path / "state"),
        "SENSORNET_INFLUX_URL": f"http://127.0.0.1:{influxd.port}",
        "SENSORNET_INFLUX_DB": f"t_{uuid.uuid4().hex[:12]}",
    }
    applied = sensornet("storage", "apply", "--json", env=env)
    assert machine(applied)["applied"] is True
    types = len(load_catalogue().types)
    steps = 2 + 3 + 2 * types  # database, SHOW, three retention policies, two CQs a type
    assert f"{steps}/{steps}" in applied.stderr
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=2, hours=5)
    done = sensornet("storage", "backfill", "--start", start.isoformat(),
                     "--end", end.isoformat(), "--json", env=env)  # fmt: skip
    assert machine(done)["backfilled"] == [start.isoformat(), end.isoformat()]
    statements = len(backfill_windows(start, end)) * types * 2
    assert f"{statements}/{statements}" in done.stderr


def test_services_probe_and_dashboards(tmp_path: Path, influxd: InfluxDB) -> None:
    env = {"SENSORNET_STATE_DIR": str(tmp_path / "state")}
    status = machine(sensornet("services", "status", "--json", env=env))
    assert all(s["pid"] is None for s in status.values())
    ping = f"http://127.0.0.1:{influxd.port}/ping"
    answer = machine(sensornet("probe", ping, "--json", env=env))
    assert answer["url"] == ping
    assert 200 <= answer["status"] < 300
    built = machine(
        sensornet("dashboards", "build", "--out", str(tmp_path / "g"), "--json", env=env)
    )
    assert built["files"] and all(Path(f).exists() for f in built["files"])


def test_backfill_windows_cut_on_whole_hours() -> None:
    start = datetime(2026, 12, 1, 7, 30, tzinfo=timezone(timedelta(hours=8)))
    end = start + timedelta(days=2)
    windows = backfill_windows(start, end)
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    for _, hi in windows[:-1]:
        assert hi.astimezone(UTC).hour == 0 and hi.minute == 0
    assert len(windows) == 3
    assert backfill_windows(end, start) == []


def test_json_makes_a_daemons_log_json() -> None:
    """``ingest``, ``api``, ``northbound`` and ``alarms run`` print nothing but their log:
    with ``--json`` it is one JSON object a line."""
    from cli.common import set_json_mode, setup_logging
    from sensornet.logs import JsonFormatter

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        set_json_mode(True)
        setup_logging(False)
        assert any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        set_json_mode(False)
        setup_logging(False)
        assert not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    finally:
        set_json_mode(False)
        root.handlers[:] = handlers
        root.setLevel(level)
