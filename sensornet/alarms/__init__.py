"""Threshold alarms: rules as data (``sensornet/data/alarm_rules.yaml``), a pure evaluator,
a store (alarm state, history, acknowledgement) and a runner that evaluates continuously."""
