"""alerts and silences

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("machine", sa.String(128)),
        sa.Column("sensor", sa.String(128)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("summary", sa.String(1000), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("acked_by", sa.String(128)),
        sa.Column("acked_at", sa.DateTime(timezone=True)),
        sa.Column("ack_note", sa.String(1000)),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("silence_id", sa.String(36)),
    )
    op.create_index("ix_alerts_status_started", "alerts", ["status", "started_at"])
    op.create_index("ix_alerts_machine_started", "alerts", ["machine", "started_at"])
    op.create_index("ix_alerts_started_id", "alerts", ["started_at", "id"])
    op.create_table(
        "silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("line", sa.String(128)),
        sa.Column("machine", sa.String(128)),
        sa.Column("kind", sa.String(32)),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_silences_ends", "silences", ["ends_at"])


def downgrade() -> None:
    op.drop_table("silences")
    op.drop_table("alerts")
