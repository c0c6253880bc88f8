"""Perceptual hashes for dedup: photos.phash, indexed in four 16-bit parts, and capture times.

Two hashes within Hamming distance 3 share at least one 16-bit part, so equality joins on the
parts find candidate pairs through indexes instead of comparing every pair of photos.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PARTS = 4


def upgrade() -> None:
    op.add_column("photos", sa.Column("phash", sa.BigInteger()))
    for part in range(PARTS):
        op.execute(
            f"CREATE INDEX ix_photos_phash_part{part} ON photos (((phash >> {16 * part}) & 65535)) "
            "WHERE phash IS NOT NULL"
        )
    op.create_index("ix_photos_taken_at", "photos", ["taken_at"])


def downgrade() -> None:
    op.drop_index("ix_photos_taken_at", "photos")
    for part in range(PARTS):
        op.execute(f"DROP INDEX ix_photos_phash_part{part}")
    op.drop_column("photos", "phash")
