"""Embeddings stored at half precision (pgvector's halfvec), the precision their search index
already had: 1,024 bytes for a 512-d embedding, inline in its row, where the float4 vector's
2,056 bytes went to TOAST in two chunks (2,856 bytes a face for the table with its TOAST,
about 1,170 now; issue 28). Distances between FaceNet embeddings of the test photos move by at
most 7e-5. The search indexes are on (embedding::halfvec(d)) and are rebuilt as they were.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    op.execute("ALTER TABLE face_embeddings ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec")


def downgrade() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    op.execute("ALTER TABLE face_embeddings ALTER COLUMN embedding TYPE vector USING embedding::vector")
