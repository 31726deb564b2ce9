"""``sensornet bench query`` runs end to end on a small load (a private InfluxDB, the API
in its own process) and reports every endpoint; its figures are for docs/benchmarks.md,
not for asserting: timing is not tested."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app

# what the bench covers: one case per query endpoint (bench/query.py), in its order
ENDPOINTS = [
    "latest_page_1000",
    "latest_type",
    "series_raw_1d",
    "series_7d_1h",
    "csv_raw_1d",
    "aggregates_7d_1h",
    "opendata_air_7d",
    "platform_health",
]


def test_bench_query_reports_every_endpoint() -> None:
    argv = ["bench", "query", "--sensors", "30", "--days", "1", "--rounds", "3", "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["bench"] == "query" and figures["points"] > 30 * 24
    assert list(figures["endpoints"]) == ENDPOINTS
    for name, endpoint in figures["endpoints"].items():
        assert endpoint["api_p50_ms"] > 0 and endpoint["direct_p50_ms"] > 0, name
        assert endpoint["bytes"] > 2, name  # an answer with content, checked 200 by the bench
        assert endpoint["api_cpu_ms_per_request"] >= 0, name  # read from /proc (Linux)


def test_bench_query_one_endpoint_with_the_hop_and_an_unknown_one() -> None:
    argv = ["bench", "query", "--sensors", "20", "--days", "1", "--rounds", "2", "--json"]
    result = CliRunner().invoke(app, [*argv, "--endpoint", "series_7d_1h", "--hop"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert list(figures["endpoints"]) == ["series_7d_1h"]
    assert figures["series_7d_1h_api_p95_ms"] > 0
    # the same query through the bare forwarder (the bench checks it answered 200)
    hop = figures["endpoints"]["series_7d_1h"]["hop"]
    assert hop["hop_p50_ms"] > 0 and hop["direct_p50_ms"] > 0
    wrong = CliRunner().invoke(app, [*argv, "--endpoint", "series_1y"])
    assert wrong.exit_code == 2
    assert "series_1y" in wrong.output and "series_7d_1h" in wrong.output
