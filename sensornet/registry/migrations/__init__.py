"""Alembic migrations of the registry, run programmatically (no alembic.ini)."""
