"""Hidden people: a person set aside (a stranger in the background, a poster, a statue) keeps
their faces, so that clustering does not make them again, and is left out of the people
lists until shown again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("identities", sa.Column("hidden", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column("identities", "hidden")
