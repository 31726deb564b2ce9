"""``sensornet bench northbound`` runs end to end on its own services and says what it
measured (the figures are for docs/benchmarks.md; timing is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_northbound_prints_one_json_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "northbound", "--events", "2000",
         "--sensors", "20", "--batch", "200", "--samples", "2", "--rounds", "2", "--json"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "northbound" and figures["events"] == 2000
    assert figures["lost"] == 0 and figures["bad_signatures"] == 0
    assert figures["ratio"] > 0 and figures["alarm_arrived"] == 2
    rounds = figures["rounds"]
    assert len(rounds) == 2 and all(r["lost"] == 0 for r in rounds)
    assert all(r["bare_events_per_s"] > 0 and r["push_events_per_s"] > 0 for r in rounds)
    assert figures["ratio"] == round((rounds[0]["ratio"] + rounds[1]["ratio"]) / 2, 3)
    assert figures["alarm_latency_p50_ms"] > 0
