"""``sensornet bench``: benchmarks, each printing one JSON line. Each part registers its
own command here (the simulator's lives in gateway_sim/bench.py)."""

from __future__ import annotations

import typer

from gateway_sim.bench import bench_simulate

bench = typer.Typer(help="Benchmarks; each prints one JSON line.", no_args_is_help=True)
bench.command("simulate")(bench_simulate)
