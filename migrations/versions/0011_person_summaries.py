"""Stored people summaries: each person's face counts, photos, distinct faces and
representative face, so that the people lists read one row a person instead of every face,
embedding and photo hash (2.5 s at 100,000 faces, minutes at ten million; issue 28).

Triggers on face_identities (and new identities) mark the people whose faces changed in
people_to_summarise; the next listing summarises only those again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_summaries",
        sa.Column("identity_id", sa.BigInteger(), sa.ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("distinct_faces", sa.Integer(), nullable=False),
        sa.Column("enrolled", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.Column("proposed", sa.Integer(), nullable=False),
        sa.Column("clustered", sa.Integer(), nullable=False),
        sa.Column("photos", sa.Integer(), nullable=False),
        sa.Column("representative_face_id", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_person_summaries_listing", "person_summaries", [sa.text("faces DESC"), "identity_id"])
    op.create_table("people_to_summarise", sa.Column("identity_id", sa.BigInteger(), primary_key=True))
    op.execute("""
        CREATE FUNCTION facedb_people_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'identities' THEN
                INSERT INTO people_to_summarise (identity_id) SELECT id FROM new_rows ON CONFLICT DO NOTHING;
                RETURN NULL;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                INSERT INTO people_to_summarise (identity_id)
                SELECT DISTINCT identity_id FROM new_rows ON CONFLICT DO NOTHING;
            END IF;
            IF TG_OP IN ('DELETE', 'UPDATE') THEN
                INSERT INTO people_to_summarise (identity_id)
                SELECT DISTINCT identity_id FROM old_rows ON CONFLICT DO NOTHING;
            END IF;
            RETURN NULL;
        END $$""")
    for event, tables in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER people_changed_{event.lower()} AFTER {event} ON face_identities "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION facedb_people_changed()"
        )
    op.execute(
        "CREATE TRIGGER people_added AFTER INSERT ON identities REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION facedb_people_changed()"
    )
    op.execute("INSERT INTO people_to_summarise (identity_id) SELECT id FROM identities")


def downgrade() -> None:
    op.execute("DROP TRIGGER people_added ON identities")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER people_changed_{event} ON face_identities")
    op.execute("DROP FUNCTION facedb_people_changed()")
    op.drop_table("people_to_summarise")
    op.drop_table("person_summaries")
