"""The runtime that made each embedding: embedding models are told apart by what ran them
(ONNX Runtime or TensorFlow, with the version) as well as by weights and preprocessing.
Embeddings stored before this revision were all made by TensorFlow.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding_models", sa.Column("runtime", sa.Text(), nullable=False, server_default="tensorflow"))
    op.drop_constraint("embedding_models_unique", "embedding_models", type_="unique")
    op.create_unique_constraint(
        "embedding_models_unique", "embedding_models", ["name", "version", "sha256", "preprocessing", "runtime"]
    )


def downgrade() -> None:
    # Rows that differ only by runtime become one again: what refers to them moves to the oldest row.
    for table in ("faces", "calibrations"):
        op.execute(f"""
            UPDATE {table} t SET embedding_model_id = keep.id
            FROM embedding_models m
            JOIN (SELECT min(id) AS id, name, version, sha256, preprocessing FROM embedding_models
                  GROUP BY name, version, sha256, preprocessing) keep
              ON (keep.name, keep.version, keep.sha256, keep.preprocessing)
               = (m.name, m.version, m.sha256, m.preprocessing)
            WHERE t.embedding_model_id = m.id AND m.id <> keep.id""")
    op.execute("""
        DELETE FROM embedding_models m USING embedding_models older
        WHERE (older.name, older.version, older.sha256, older.preprocessing) = (m.name, m.version, m.sha256, m.preprocessing)
          AND older.id < m.id""")
    op.drop_constraint("embedding_models_unique", "embedding_models", type_="unique")
    op.create_unique_constraint(
        "embedding_models_unique", "embedding_models", ["name", "version", "sha256", "preprocessing"]
    )
    op.drop_column("embedding_models", "runtime")
