"""Sensors may carry the name their SenML packs give them, unique when set (NULL for the rest).

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        batch.add_column(sa.Column("senml_name", sa.String(255), nullable=True))
        # UNIQUE lets any number of NULLs through on SQLite and PostgreSQL alike.
        batch.create_index("ux_sensors_senml_name", ["senml_name"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        batch.drop_index("ux_sensors_senml_name")
        batch.drop_column("senml_name")
