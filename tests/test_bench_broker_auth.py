"""``sensornet bench broker-auth`` runs both delivery mechanisms on a small fleet and says
what it measured (its figures are for docs/benchmarks.md; timing is not tested)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def test_bench_broker_auth_prints_one_json_line() -> None:
    argv = ["bench", "broker-auth", "--connected", "20", "--register", "5"]
    result = CliRunner().invoke(app, [*argv, "--sample-101", "2", "--budget-s", "30"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for phase in ("passwd_one_by_one", "passwd_bulk", "dynsec_one_by_one", "dynsec_bulk"):
        assert figures[phase]["registered"] == 5, phase
        assert figures[phase]["still_connected"] == 20, phase
    assert figures["passwd_101_iterations_one_by_one"]["registered"] == 2


def test_bench_broker_reload_prints_one_json_line() -> None:
    argv = ["bench", "broker-reload", "--scale", "0.002", "--reloads", "2", "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert all(p["still_connected"] == p["connected"] for p in figures["points"])
    assert set(figures["fit"]) == {"fixed_ms", "per_1000_registered_ms", "per_1000_connected_ms"}
    assert figures["model_50000"]["connected"] == 50_000
