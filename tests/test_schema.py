"""The schema comes only from Alembic migrations, and they go both ways."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from facedb.config import Settings
from facedb.db.database import Database
from facedb.db.schema import Base

TABLES = {"photos", "faces", "identities", "face_identities", "embedding_models"}


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_downgrade_and_upgrade_again(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()), migrate=False)
    try:
        assert _tables(database) == set()
        database.upgrade()
        assert _tables(database) == TABLES
        assert database.current_revision() == database.head_revision()
        with database.engine.connect() as conn:
            # the migrated schema is exactly what the typed models describe
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
            index = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'faces_embedding_hnsw'")).scalar()
        assert "hnsw" in index and "vector_l2_ops" in index
        database.downgrade("base")
        assert _tables(database) == set() and database.current_revision() is None
        database.upgrade()
        assert _tables(database) == TABLES
    finally:
        database.close()


def test_opening_a_new_database_migrates_it(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()))
    try:
        assert _tables(database) == TABLES
    finally:
        database.close()
