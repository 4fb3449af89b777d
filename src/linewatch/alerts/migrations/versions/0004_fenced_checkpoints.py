"""fenced checkpoints: each detector state row records how far into its partition it had learned

A checkpoint write is refused, in its own transaction, for a key whose stored row has learned
further into the same partition (a worker resumed from a pause must not overwrite the state of the
partition's newer owner). Rows written before this revision have no position and are never refused
against.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detector_state") as batch:
        batch.add_column(sa.Column("source_topic", sa.String(300), nullable=True))
        batch.add_column(sa.Column("source_partition", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("next_offset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detector_state") as batch:
        batch.drop_column("next_offset")
        batch.drop_column("source_partition")
        batch.drop_column("source_topic")
