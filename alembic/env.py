"""Alembic environment. facedb hands in an open connection (config.attributes["connection"]);
run from the command line, `alembic` resolves the database the way facedb does."""

from alembic import context
from facedb.db.schema import Base

config = context.config
connection = config.attributes.get("connection")


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    from facedb.config import Settings
    from facedb.db.database import Database

    database = Database.open(Settings.load(), migrate=False)
    with database.engine.begin() as conn:
        run(conn)
