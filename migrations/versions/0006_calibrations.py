"""Calibrated thresholds: `facedb calibrate` stores the threshold it chose for an embedding
model with the evidence behind it; the newest one per model is the threshold in force.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("embedding_model_id", sa.SmallInteger(), sa.ForeignKey("embedding_models.id"), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("far_target", sa.Double(), nullable=False),
        sa.Column("evidence", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("threshold > 0 AND threshold <= 2", name="calibrations_threshold_valid"),
    )
    op.create_index("ix_calibrations_embedding_model_id", "calibrations", ["embedding_model_id", "created_at"])


def downgrade() -> None:
    op.drop_table("calibrations")
