"""people's actions: a journal of acknowledgements, resolutions, new normals and silences

Every worker reads the journal from where it last stopped, so an action taken through the API of
one worker reaches the alert book of the worker that owns the machine. Its ``seq`` comes from the
``counters`` row ``alert_actions``, incremented in the action's own transaction: the row lock makes
concurrent actions commit in ``seq`` order, so a reader that has seen ``seq`` n never misses a
smaller one committed later.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counters, [{"name": "alert_actions", "value": 0}])
    op.create_table(
        "alert_actions",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("alert_id", sa.String(36)),
        sa.Column("silence_id", sa.String(36)),
        sa.Column("line", sa.String(128)),
        sa.Column("machine", sa.String(128)),
        sa.Column("kind", sa.String(32)),
        sa.Column("by", sa.String(128)),
        sa.Column("note", sa.String(1000)),
    )


def downgrade() -> None:
    op.drop_table("alert_actions")
    op.drop_table("counters")
