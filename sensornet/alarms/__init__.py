"""Threshold alarms, the part several parts share: rules as data
(``sensornet/data/alarm_rules.yaml``), a pure evaluator and the store (alarm state, history,
acknowledgement) the API reads. The runner that evaluates continuously is the ``alarms/``
part."""
