"""Northbound push: one long-running process (``sensornet northbound``) that delivers each
subscription's events in signed CloudEvents batches (docs/northbound.md)."""
