"""Stored counts of photos, failed photos, faces, people and assigned faces, so that `status`
and the listings' totals read a few rows instead of counting every photo and face (seconds at
ten million faces; issue 28).

Statement triggers append each statement's change to archive_count_changes (appending takes no
lock that another writer waits for, as updating one counter row would); a read sums them, and
the primary folds them into one row a count now and then.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# table -> (count, rows counted), for inserts and deletes
COUNTED = {
    "photos": [("photos", "true"), ("failed_photos", "status = 'failed'")],
    "faces": [("faces", "true")],
    "identities": [("identities", "true")],
    "face_identities": [("assigned_faces", "true")],
}


def upgrade() -> None:
    op.create_table(
        "archive_count_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("change", sa.BigInteger(), nullable=False),
    )
    for table, counts in COUNTED.items():
        for event, rows, sign in (("INSERT", "new_rows", "+"), ("DELETE", "old_rows", "-")):
            selects = " UNION ALL ".join(
                f"SELECT '{name}', {sign}count(*) FROM {rows} WHERE {where} HAVING count(*) > 0"
                for name, where in counts
            )
            op.execute(f"""
                CREATE FUNCTION facedb_count_{table}_{event.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO archive_count_changes (name, change) {selects};
                    RETURN NULL;
                END $$""")
            op.execute(
                f"CREATE TRIGGER count_{event.lower()} AFTER {event} ON {table} "
                f"REFERENCING {'NEW' if event == 'INSERT' else 'OLD'} TABLE AS {rows} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION facedb_count_{table}_{event.lower()}()"
            )
    # a photo that fails, or is indexed again after failing
    op.execute("""
        CREATE FUNCTION facedb_count_photos_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO archive_count_changes (name, change)
            SELECT 'failed_photos', n FROM (
                SELECT (SELECT count(*) FROM new_rows WHERE status = 'failed')
                     - (SELECT count(*) FROM old_rows WHERE status = 'failed') AS n) d
            WHERE n <> 0;
            RETURN NULL;
        END $$""")
    op.execute(
        "CREATE TRIGGER count_update AFTER UPDATE ON photos REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION facedb_count_photos_update()"
    )
    op.execute("""
        INSERT INTO archive_count_changes (name, change)
        SELECT 'photos', count(*) FROM photos UNION ALL
        SELECT 'failed_photos', count(*) FROM photos WHERE status = 'failed' UNION ALL
        SELECT 'faces', count(*) FROM faces UNION ALL
        SELECT 'identities', count(*) FROM identities UNION ALL
        SELECT 'assigned_faces', count(*) FROM face_identities""")


def downgrade() -> None:
    op.execute("DROP TRIGGER count_update ON photos")
    op.execute("DROP FUNCTION facedb_count_photos_update()")
    for table in COUNTED:
        for event in ("insert", "delete"):
            op.execute(f"DROP TRIGGER count_{event} ON {table}")
            op.execute(f"DROP FUNCTION facedb_count_{table}_{event}()")
    op.drop_table("archive_count_changes")
