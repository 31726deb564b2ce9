"""The ``sensornet`` command (top layer: wiring, benchmarks and every part below it)."""
