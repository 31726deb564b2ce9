"""``sensornet bench query`` runs end to end on a small load (a private InfluxDB, the API
and the bare forwarder each in its own process), reports every endpoint and judges each
against the query-overhead target from the figures it prints; the figures themselves are
for docs/benchmarks.md, not for asserting: timing is not tested."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from typer.testing import CliRunner

from sensornet.bench_query import ADDED_MS_LIMIT, HOP_ALLOWANCE, cases, endpoint_target
from sensornet.catalogue import load_catalogue
from sensornet.cli import app
from sensornet.runtime import default_fleet


def bench(*args: str) -> dict[str, Any]:
    argv = ["bench", "query", "--days", "1", "--json", *args]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    figures: dict[str, Any] = json.loads(result.output.strip().splitlines()[-1])
    return figures


def assert_verdict_from_figures(figures: dict[str, Any]) -> None:
    """Each endpoint's verdict is what its own printed figures give, and the top level
    names exactly the endpoints that miss."""
    for name, endpoint in figures["endpoints"].items():
        target = endpoint["target"]
        added = round(endpoint["api_p50_ms"] - endpoint["direct_p50_ms"], 2)
        assert target["added_ms"] == added, name
        assert target["added_ms_met"] == (added <= ADDED_MS_LIMIT), name
        if "hop" in endpoint:
            limit = round(endpoint["hop"]["hop_ratio"] + HOP_ALLOWANCE, 3)
            assert target["ratio_limit"] == limit, name
            assert target["ratio_met"] == (endpoint["overhead_ratio"] <= limit), name
        else:
            assert target["ratio_limit"] is None and target["ratio_met"] is None, name
        assert target["met"] == (target["added_ms_met"] and target["ratio_met"] is not False)
    missed = [name for name, e in figures["endpoints"].items() if not e["target"]["met"]]
    assert figures["target_missed"] == missed
    assert figures["target_met"] is (not missed)


def test_bench_query_reports_every_endpoint_and_its_target() -> None:
    figures = bench("--sensors", "30", "--rounds", "3")
    assert figures["bench"] == "query" and figures["points"] > 30 * 24
    names = [c.name for c in cases(load_catalogue(), default_fleet(30), datetime.now(UTC))]
    assert list(figures["endpoints"]) == names
    one_query = {c.name for c in cases(load_catalogue(), default_fleet(30), datetime.now(UTC))
                 if c.influxql is not None}  # fmt: skip
    for name, endpoint in figures["endpoints"].items():
        assert endpoint["api_p50_ms"] > 0 and endpoint["direct_p50_ms"] > 0, name
        assert endpoint["bytes"] > 2, name  # an answer with content, checked 200 by the bench
        assert endpoint["api_cpu_ms_per_request"] >= 0, name  # read from /proc (Linux)
        # the floor is always measured for the endpoints it applies to (no flag to forget)
        assert ("hop" in endpoint) == (name in one_query), name
    assert one_query and one_query < set(names)
    assert_verdict_from_figures(figures)


def test_bench_query_one_endpoint_and_an_unknown_one() -> None:
    figures = bench("--sensors", "20", "--rounds", "2", "--endpoint", "series_7d_1h")
    assert list(figures["endpoints"]) == ["series_7d_1h"]
    assert figures["series_7d_1h_api_p95_ms"] > 0
    # the same query through the bare forwarder (the bench checks it answered 200)
    hop = figures["endpoints"]["series_7d_1h"]["hop"]
    assert hop["hop_p50_ms"] > 0 and hop["direct_p50_ms"] > 0
    assert_verdict_from_figures(figures)
    argv = ["bench", "query", "--sensors", "20", "--days", "1", "--endpoint", "series_1y"]
    wrong = CliRunner().invoke(app, argv)
    assert wrong.exit_code == 2
    assert "series_1y" in wrong.output and "series_7d_1h" in wrong.output


def figures(api: float, direct: float, hop_ratio: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "api_p50_ms": api,
        "direct_p50_ms": direct,
        "overhead_ratio": round(api / direct, 3),
    }
    if hop_ratio is not None:
        out["hop"] = {"hop_ratio": hop_ratio}
    return out


def test_target_judges_the_ratio_against_the_floor_and_the_added_milliseconds() -> None:
    inside = endpoint_target(figures(3.6, 3.0, hop_ratio=0.96))  # 1.2 <= 1.21, +0.6 ms
    assert inside["met"] and inside["ratio_limit"] == 1.21 and inside["added_ms"] == 0.6
    over_floor = endpoint_target(figures(3.66, 3.0, hop_ratio=0.96))  # 1.22 > 1.21
    assert not over_floor["met"] and not over_floor["ratio_met"] and over_floor["added_ms_met"]
    over_ms = endpoint_target(figures(12.2, 10.0, hop_ratio=1.0))  # 1.22 <= 1.25, +2.2 ms
    assert not over_ms["met"] and over_ms["ratio_met"] and not over_ms["added_ms_met"]
    at_limits = endpoint_target(figures(2.0, 1.0, hop_ratio=1.75))  # 2.0 = 2.0, +1.0 ms
    assert at_limits["met"]
    # several queries: no forwarder floor, only the added milliseconds count
    several = endpoint_target(figures(5.0, 2.0))  # ratio 2.5, +3 ms
    assert several["ratio_limit"] is None and several["ratio_met"] is None
    assert not several["met"]
    assert endpoint_target(figures(2.9, 2.0))["met"]  # ratio 1.45, +0.9 ms
