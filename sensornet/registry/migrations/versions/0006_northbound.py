"""Northbound subscriptions, their cursors (the durable outbox) and delivery counts.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "northbound_subscriptions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column("kinds", sa.JSON, nullable=False),
        sa.Column("filter", sa.JSON, nullable=False),
        sa.Column("resolution", sa.String(8), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pause_reason", sa.Text, nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("delivered", sa.BigInteger, nullable=False),
        sa.Column("failed_attempts", sa.BigInteger, nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_delivery_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "northbound_cursors",
        sa.Column("subscription_id", sa.String(32), primary_key=True),
        sa.Column("stream", sa.String(16), primary_key=True),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
    )
    op.create_table(
        "northbound_acks",
        sa.Column("subscription_id", sa.String(32), primary_key=True),
        sa.Column("stream", sa.String(16), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("northbound_acks")
    op.drop_table("northbound_cursors")
    op.drop_table("northbound_subscriptions")
