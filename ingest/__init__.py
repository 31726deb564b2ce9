"""The ingester: MQTT -> decode -> validate/enrich -> InfluxDB, acknowledging after write."""
