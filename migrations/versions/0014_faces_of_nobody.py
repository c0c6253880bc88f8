"""The faces of nobody, kept as a list of their ids, so that `faces --unassigned` (and the
people page's queue) reads a page of them by id instead of walking every face from the lowest
id until it has found a page: after clustering, faces of nobody are few among millions
(issue 28).

Statement triggers keep it: a new face is nobody's; a face put into a person leaves the list,
and comes back when it is taken out of every person; a deleted face leaves it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TRIGGERS = {
    # (table, event): what the statement's rows do to the list
    ("faces", "INSERT"): "INSERT INTO faces_of_nobody (face_id) SELECT id FROM changed ON CONFLICT DO NOTHING",
    ("faces", "DELETE"): "DELETE FROM faces_of_nobody n USING changed c WHERE n.face_id = c.id",
    ("face_identities", "INSERT"): "DELETE FROM faces_of_nobody n USING changed c WHERE n.face_id = c.face_id",
    # back on the list only while the face exists (a deleted face's assignment goes with it)
    ("face_identities", "DELETE"): """
        INSERT INTO faces_of_nobody (face_id)
        SELECT c.face_id FROM changed c JOIN faces f ON f.id = c.face_id
        WHERE NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.face_id = c.face_id)
        ON CONFLICT DO NOTHING""",
}


def upgrade() -> None:
    op.create_table("faces_of_nobody", sa.Column("face_id", sa.BigInteger(), primary_key=True))
    for (table, event), statement in _TRIGGERS.items():
        name = f"facedb_nobody_{table}_{event.lower()}"
        op.execute(f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {statement};
                RETURN NULL;
            END $$""")
        op.execute(
            f"CREATE TRIGGER nobody_{event.lower()} AFTER {event} ON {table} "
            f"REFERENCING {'NEW' if event == 'INSERT' else 'OLD'} TABLE AS changed "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute("""
        INSERT INTO faces_of_nobody (face_id)
        SELECT f.id FROM faces f WHERE NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.face_id = f.id)""")


def downgrade() -> None:
    for table, event in _TRIGGERS:
        op.execute(f"DROP TRIGGER nobody_{event.lower()} ON {table}")
        op.execute(f"DROP FUNCTION facedb_nobody_{table}_{event.lower()}()")
    op.drop_table("faces_of_nobody")
