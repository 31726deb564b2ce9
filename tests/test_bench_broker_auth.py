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
