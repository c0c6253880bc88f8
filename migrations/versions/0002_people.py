"""People: faces grouped by clustering ('clustered'), and rejections ("this face is not X").

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("face_identities_source_valid", "face_identities", type_="check")
    op.create_check_constraint(
        "face_identities_source_valid",
        "face_identities",
        "source IN ('enrolled', 'confirmed', 'proposed', 'clustered')",
    )
    op.create_table(
        "face_rejections",
        sa.Column("face_id", sa.BigInteger(), sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("identity_id", sa.BigInteger(), sa.ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_face_rejections_identity_id", "face_rejections", ["identity_id"])


def downgrade() -> None:
    op.drop_table("face_rejections")
    op.execute("DELETE FROM face_identities WHERE source = 'clustered'")
    op.drop_constraint("face_identities_source_valid", "face_identities", type_="check")
    op.create_check_constraint(
        "face_identities_source_valid", "face_identities", "source IN ('enrolled', 'confirmed', 'proposed')"
    )
