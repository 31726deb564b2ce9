"""``sensornet bench ingest --input http`` and ``sensornet bench http-listener`` run and say
what they measured (their figures are for docs/benchmarks.md; timing is not asserted, but
a lost reading is)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def test_bench_ingest_over_http_prints_one_json_line_and_loses_nothing() -> None:
    args = ["bench", "ingest", "--input", "http", "--readings", "3000", "--sensors", "30"]
    result = CliRunner().invoke(app, [*args, "--concurrency", "8", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["input"] == "http" and figures["requests"] == 30 and figures["batch"] == 100
    assert figures["lost"] == 0 and figures["readings_stored"] == 3000
    assert figures["ratio"] > 0 and figures["ceiling_points_per_s"] > 0


def test_bench_http_listener_prints_one_json_line() -> None:
    args = ["bench", "http-listener", "--requests", "200", "--rounds", "1", "--concurrency", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for server in ("own", "uvicorn"):
        assert figures[f"{server}_requests_per_s"] > 0
        assert figures[f"{server}_server_cpu_us_per_request"] >= 0
