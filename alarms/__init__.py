"""The alarms part: the runner that evaluates the rules continuously, writes the operations
view, and tells people (Alertmanager, receivers' relay, maintenance) — beside ``ingest/`` and
``api/``. The pure rule evaluation and the alarm store it shares with the API and the
dashboards stay in the core (``sensornet.alarms``)."""
