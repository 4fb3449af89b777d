"""alerts remember whether their latest state was announced

A worker replaying old data must not announce again an episode the store has closed, yet after a
crash between the store's write and the alerts topic's, the resolution the store holds was never
announced and must go out. ``announced`` tells the two apart: the worker sets it false with every
write and true once the sinks have the batch; a person's action counts as announced (the API
announces it). Rows written before this revision were announced.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("announced", sa.Boolean(), nullable=True))
    op.execute("UPDATE alerts SET announced = TRUE")


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("announced")
