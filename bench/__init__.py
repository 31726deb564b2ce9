"""Every benchmark: each measures one thing against a limit measured in the same run and
prints one JSON line (``sensornet bench ...``; docs/benchmarks.md). Tests never import
from here."""
