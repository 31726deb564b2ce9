"""Sensors may carry the names other ways in give them, each unique when set (NULL for the
rest): ``senml_name`` (SenML packs, RFC 8428), ``sc_chip`` and ``sc_location`` (a
Sensor.Community node's firmware chip id and its location id in the public data API).

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (("senml_name", 255), ("sc_chip", 32), ("sc_location", 16))


def upgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        for name, length in _COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
            # UNIQUE lets any number of NULLs through on SQLite and PostgreSQL alike.
            batch.create_index(f"ux_sensors_{name}", [name], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_index(f"ux_sensors_{name}")
            batch.drop_column(name)
