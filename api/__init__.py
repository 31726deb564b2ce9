"""The query API (FastAPI): readings, sensors and platform health over HTTP."""
