"""``sensornet bench pipeline`` runs and says what it measured (its figures are for
docs/benchmarks.md, not for asserting: timing is not tested)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def test_bench_pipeline_prints_one_json_line() -> None:
    result = CliRunner().invoke(app, ["bench", "pipeline", "--readings", "2000", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["bench"] == "pipeline" and figures["readings"] == 2000
    for key in ("single_fast_us", "single_general_us", "pack100_fast_us_per_reading", "frames_us"):
        assert figures[key] > 0
