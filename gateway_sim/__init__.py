"""The city simulator: a fleet of sensors across the district, publishing over MQTT."""
