"""``sensornet bench senml`` runs and says what it measured (its figures are for
docs/benchmarks.md, not for asserting: timing is not tested)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def test_bench_senml_prints_one_json_line() -> None:
    result = CliRunner().invoke(app, ["bench", "senml", "--readings", "500", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["bench"] == "senml" and figures["readings"] == 500
    for key in ("native_fast_us", "senml_json_us", "senml_cbor_us", "senml_json_ratio"):
        assert figures[key] > 0
