"""model versions: what each machine's model learned, every time it finished learning

A version records machine, recipe, model kind and settings, why it was learned and at whose word,
the readings it learned from, its threshold, each sensor's normal band, how its thresholds were
calibrated and the model's state then. Anomaly alerts name the version that raised it
(``details.model_version``). ``recipe`` is "" for a machine whose readings name none, so it can be
compared with ``=`` on every database.

A person activating an older version (a rollback) is journalled like any other action, with the
machine, recipe and version (``alert_actions.recipe``, ``alert_actions.model_version``), so the worker
that owns the machine swaps its model whichever worker's API took the request.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("machine", sa.String(128), nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("recipe", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("made_by", sa.String(128)),
        sa.Column("note", sa.String(1000)),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("learned_from", sa.DateTime(timezone=True)),
        sa.Column("readings", sa.BigInteger(), nullable=False),
        sa.Column("threshold", sa.Float()),
        sa.Column("normal_ranges", sa.JSON(), nullable=False),
        sa.Column("calibration", sa.JSON()),
        sa.Column("gate", sa.JSON()),
        sa.Column("state", sa.LargeBinary()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True)),  # when a person last put it back in use
    )
    op.create_index("ix_model_versions_machine", "model_versions", ["machine", "recipe", "version"])
    # one version in use per machine and recipe, whoever writes at the same moment (a worker recording
    # what its model learned, a person rolling back): the second writer fails and retries
    active = sa.text("status = 'active'")
    op.create_index("ux_model_versions_active", "model_versions", ["machine", "recipe"], unique=True,
                    sqlite_where=active, postgresql_where=active)
    with op.batch_alter_table("alert_actions") as batch:
        batch.add_column(sa.Column("recipe", sa.String(128), nullable=True))
        batch.add_column(sa.Column("model_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_actions") as batch:
        batch.drop_column("model_version")
        batch.drop_column("recipe")
    op.drop_table("model_versions")
