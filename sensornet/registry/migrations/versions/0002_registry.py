"""Field-engineer registry: sensor details, gateways, audit log, API keys, MQTT hashes.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TEXT_DEFAULT = sa.text("''")


def upgrade() -> None:
    with op.batch_alter_table("sensors") as batch:
        batch.add_column(
            sa.Column("address", sa.Text, nullable=False, server_default=_TEXT_DEFAULT)
        )
        batch.add_column(
            sa.Column("description", sa.Text, nullable=False, server_default=_TEXT_DEFAULT)
        )
        batch.add_column(
            sa.Column("mounting", sa.String(64), nullable=False, server_default=_TEXT_DEFAULT)
        )
        batch.add_column(sa.Column("installed_on", sa.Date, nullable=True))
        batch.add_column(sa.Column("commissioned_on", sa.Date, nullable=True))
        batch.add_column(
            sa.Column(
                "owner_department", sa.String(128), nullable=False, server_default=_TEXT_DEFAULT
            )
        )
        batch.add_column(
            sa.Column("firmware", sa.String(64), nullable=False, server_default=_TEXT_DEFAULT)
        )
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("mqtt_password_hash", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("credentials_issued_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_sensors_type", ["type"])
        batch.create_index("ix_sensors_subdistrict", ["subdistrict"])
        batch.create_index("ix_sensors_status", ["status"])
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subdistrict", sa.String(64), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=_TEXT_DEFAULT),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mqtt_password_hash", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
    )
    op.create_index("ix_audit_entity", "audit_log", ["entity", "entity_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False, server_default=_TEXT_DEFAULT),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False, server_default=_TEXT_DEFAULT),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("audit_log")
    op.drop_table("gateways")
    with op.batch_alter_table("sensors") as batch:
        for index in ("ix_sensors_type", "ix_sensors_subdistrict", "ix_sensors_status"):
            batch.drop_index(index)
        for column in (
            "address",
            "description",
            "mounting",
            "installed_on",
            "commissioned_on",
            "owner_department",
            "firmware",
            "created_at",
            "mqtt_password_hash",
            "credentials_issued_at",
        ):
            batch.drop_column(column)
