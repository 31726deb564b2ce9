"""Sensors may carry a LoRaWAN DevEUI, unique across the registry (NULL for the rest).

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        batch.add_column(sa.Column("dev_eui", sa.String(16), nullable=True))
        # SQL's UNIQUE lets any number of NULLs through (SQLite and PostgreSQL alike):
        # sensors without a DevEUI do not clash.
        batch.create_index("ux_sensors_dev_eui", ["dev_eui"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        batch.drop_index("ux_sensors_dev_eui")
        batch.drop_column("dev_eui")
