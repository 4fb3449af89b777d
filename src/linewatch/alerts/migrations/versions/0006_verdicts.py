"""operator verdicts on alerts: true alarm, false alarm, new normal or unclear

A person resolving an alert (or judging it afterwards, when a destructive test comes back) says what
it was. Per machine, the share judged true is the detector's live precision. The journal records the
verdict with the action, so every worker's alert book mirrors it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("verdict", sa.String(16), nullable=True))
        batch.add_column(sa.Column("verdict_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("verdict_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("verdict_note", sa.String(1000), nullable=True))
    with op.batch_alter_table("alert_actions") as batch:
        batch.add_column(sa.Column("verdict", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_actions") as batch:
        batch.drop_column("verdict")
    with op.batch_alter_table("alerts") as batch:
        for column in ("verdict_note", "verdict_at", "verdict_by", "verdict"):
            batch.drop_column(column)
