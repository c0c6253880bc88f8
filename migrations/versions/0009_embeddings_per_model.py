"""Several embedding models in one database: the embeddings move from faces.embedding (one
512-d vector per face) to face_embeddings, one row per face and model, each model with its own
partial HNSW index at its dimension. The stored vectors are copied, not recomputed; identities,
confirmations and rejections stay on the faces. database_settings holds the database's default
model (the one `who`, `cluster` and the others use when no --model is given).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import re

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT_MODEL = "20180408-102900"  # the only model before this revision
# Every model of models/manifest.json with its dimension: a model added there needs a migration
# adding its search index (tests/test_schema.py checks that each has one).
MODELS = {DEFAULT_MODEL: 512, "20170512-110547": 128}


def _index_ddl(model: str, dimension: int) -> str:
    # as facedb/db/sql.py's embedding_index_ddl (a migration must not change when that does)
    assert re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}", model)
    name = "face_embeddings_hnsw_" + re.sub(r"[^0-9A-Za-z]", "_", model)
    return (
        f"CREATE INDEX {name} ON face_embeddings USING hnsw "
        f"((embedding::halfvec({int(dimension)})) halfvec_l2_ops) WITH (m = 16, ef_construction = 64) "
        f"WHERE model = '{model}'"
    )


def upgrade() -> None:
    op.create_table(
        "face_embeddings",
        sa.Column("face_id", sa.BigInteger(), sa.ForeignKey("faces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("embedding_model_id", sa.SmallInteger(), sa.ForeignKey("embedding_models.id"), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.PrimaryKeyConstraint("face_id", "model", name="face_embeddings_pkey"),
    )
    op.create_index("ix_face_embeddings_model", "face_embeddings", ["model", "face_id"])
    op.execute("""
        INSERT INTO face_embeddings (face_id, model, embedding_model_id, embedding)
        SELECT f.id, m.version, f.embedding_model_id, f.embedding
        FROM faces f JOIN embedding_models m ON m.id = f.embedding_model_id""")
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for model, dimension in MODELS.items():
        op.execute(_index_ddl(model, dimension))
    op.execute("DROP INDEX IF EXISTS faces_embedding_hnsw")
    op.drop_column("faces", "embedding")
    op.drop_column("faces", "embedding_model_id")
    op.create_table(
        "database_settings",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.execute(
        sa.text("INSERT INTO database_settings (name, value) VALUES ('default_model', :model)").bindparams(
            model=DEFAULT_MODEL
        )
    )


def downgrade() -> None:
    bind = op.get_bind()
    default = bind.execute(sa.text("SELECT value FROM database_settings WHERE name = 'default_model'")).scalar()
    op.add_column("faces", sa.Column("embedding", Vector(512), nullable=True))
    op.add_column("faces", sa.Column("embedding_model_id", sa.SmallInteger(), nullable=True))
    op.execute(
        sa.text("""
        UPDATE faces f SET embedding = e.embedding, embedding_model_id = e.embedding_model_id
        FROM face_embeddings e WHERE e.face_id = f.id AND e.model = :model""").bindparams(model=DEFAULT_MODEL)
    )
    missing = bind.execute(sa.text("SELECT count(*) FROM faces WHERE embedding IS NULL")).scalar()
    if missing:
        raise RuntimeError(
            f"{missing} faces have no embedding of {DEFAULT_MODEL} (the database's default is {default}): "
            f"run `facedb reembed --model {DEFAULT_MODEL}` before going back to revision 0008"
        )
    op.alter_column("faces", "embedding", nullable=False)
    op.alter_column("faces", "embedding_model_id", nullable=False)
    op.create_foreign_key(None, "faces", "embedding_models", ["embedding_model_id"], ["id"])
    op.execute(
        "CREATE INDEX faces_embedding_hnsw ON faces USING hnsw ((embedding::halfvec(512)) halfvec_l2_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )
    op.drop_table("face_embeddings")
    op.drop_table("database_settings")
