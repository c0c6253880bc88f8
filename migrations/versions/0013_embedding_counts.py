"""Stored counts of embeddings by how they were made (embedding_models: the model, its weights,
preprocessing and runtime), so that `facedb models` and GET /v1/models say how many faces each
model has embedded, and how many still lack an embedding made as facedb makes it now, without
counting every face (seconds at ten million faces; issues 28 and 30).

The same statement triggers as migration 0012's, on face_embeddings: each statement's change
per embedding_models row is appended to archive_count_changes as 'embeddings:<id>'. `reembed`
replaces an older crop's embedding in place (INSERT ... ON CONFLICT DO UPDATE), so an update
moves its rows from the old id to the new.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_CHANGE = "SELECT 'embeddings:' || embedding_model_id, {sign}count(*) FROM {rows} GROUP BY embedding_model_id"


def upgrade() -> None:
    for event, rows, sign in (("INSERT", "new_rows", "+"), ("DELETE", "old_rows", "-")):
        op.execute(f"""
            CREATE FUNCTION facedb_count_face_embeddings_{event.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO archive_count_changes (name, change) {_CHANGE.format(sign=sign, rows=rows)};
                RETURN NULL;
            END $$""")
        op.execute(
            f"CREATE TRIGGER count_{event.lower()} AFTER {event} ON face_embeddings "
            f"REFERENCING {'NEW' if event == 'INSERT' else 'OLD'} TABLE AS {rows} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION facedb_count_face_embeddings_{event.lower()}()"
        )
    op.execute(f"""
        CREATE FUNCTION facedb_count_face_embeddings_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO archive_count_changes (name, change)
            SELECT name, sum(change) FROM (
                {_CHANGE.format(sign="+", rows="new_rows")} UNION ALL
                {_CHANGE.format(sign="-", rows="old_rows")}) c(name, change)
            GROUP BY name HAVING sum(change) <> 0;
            RETURN NULL;
        END $$""")
    op.execute(
        "CREATE TRIGGER count_update AFTER UPDATE ON face_embeddings "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION facedb_count_face_embeddings_update()"
    )
    op.execute(f"INSERT INTO archive_count_changes (name, change) {_CHANGE.format(sign='', rows='face_embeddings')}")


def downgrade() -> None:
    for event in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER count_{event} ON face_embeddings")
        op.execute(f"DROP FUNCTION facedb_count_face_embeddings_{event}()")
    op.execute("DELETE FROM archive_count_changes WHERE name LIKE 'embeddings:%'")
