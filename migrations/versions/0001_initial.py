"""Photos, faces with 512-d embeddings (HNSW, L2), identities and face assignments.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "photos",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text()),
        sa.Column("size", sa.BigInteger()),
        sa.Column("mtime_ns", sa.BigInteger()),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("format", sa.Text()),
        sa.Column("taken_at", sa.DateTime(timezone=False)),
        sa.Column("camera", sa.Text()),
        sa.Column("gps_lat", sa.Double()),
        sa.Column("gps_lon", sa.Double()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("face_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('indexed', 'failed')", name="photos_status_valid"),
        sa.UniqueConstraint("path", name="photos_path_key"),
    )
    op.create_index("ix_photos_content_hash", "photos", ["content_hash"])

    op.create_table(
        "embedding_models",
        sa.Column("id", sa.SmallInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("preprocessing", sa.Text(), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.UniqueConstraint("name", "version", "sha256", "preprocessing", name="embedding_models_unique"),
    )

    op.create_table(
        "faces",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("photo_id", sa.BigInteger(), sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("box_x", sa.REAL(), nullable=False),
        sa.Column("box_y", sa.REAL(), nullable=False),
        sa.Column("box_w", sa.REAL(), nullable=False),
        sa.Column("box_h", sa.REAL(), nullable=False),
        sa.Column("landmarks", postgresql.ARRAY(sa.REAL()), nullable=False),
        sa.Column("score", sa.REAL(), nullable=False),
        sa.Column("embedding", Vector(512), nullable=False),
        sa.Column("embedding_model_id", sa.SmallInteger(), sa.ForeignKey("embedding_models.id"), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary()),
    )
    op.create_index("ix_faces_photo_id", "faces", ["photo_id"])
    op.create_index(
        "faces_embedding_hnsw",
        "faces",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_l2_ops"},
    )

    op.create_table(
        "identities",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("name", name="identities_name_key"),
    )

    op.create_table(
        "face_identities",
        sa.Column("face_id", sa.BigInteger(), sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("identity_id", sa.BigInteger(), sa.ForeignKey("identities.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("source IN ('enrolled', 'confirmed', 'proposed')", name="face_identities_source_valid"),
    )
    op.create_index("ix_face_identities_identity_id", "face_identities", ["identity_id"])


def downgrade() -> None:
    op.drop_table("face_identities")
    op.drop_table("identities")
    op.drop_table("faces")
    op.drop_table("embedding_models")
    op.drop_table("photos")
