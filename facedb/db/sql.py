"""The words of the stored data as SQL, the search index's definition and the newest schema
revision: what the queries share, without the ORM models of schema.py."""

from __future__ import annotations

from ..records import EMBEDDING_DIMENSION, HUMAN_SOURCES, PHOTO_STATUSES, SYSTEM_SOURCES

# The newest migration (migrations/versions/); tests/test_schema.py checks it is Alembic's head.
# A database at this revision is opened without loading Alembic (0.35 s of every start).
SCHEMA_HEAD = "0008"


def sql_list(words: tuple[str, ...]) -> str:
    """A tuple of this module's own words as an SQL list: ('a', 'b'). Never for user text."""
    return "(" + ", ".join(f"'{w}'" for w in words) + ")"


INDEXED_SQL, FAILED_SQL = (f"'{status}'" for status in PHOTO_STATUSES)  # as SQL literals
HUMAN_SOURCES_SQL = sql_list(HUMAN_SOURCES)
SYSTEM_SOURCES_SQL = sql_list(SYSTEM_SOURCES)

# The search index, as migration 0005 built it and `facedb check --fix` rebuilds it; `check`
# compares the live definition with these parts.
EMBEDDING_INDEX = "faces_embedding_hnsw"
EMBEDDING_INDEX_DDL = (
    f"CREATE INDEX {EMBEDDING_INDEX} ON faces USING hnsw "
    f"((embedding::halfvec({EMBEDDING_DIMENSION})) halfvec_l2_ops) WITH (m = 16, ef_construction = 64)"
)
EMBEDDING_INDEX_PARTS = (
    "USING hnsw",
    f"::halfvec({EMBEDDING_DIMENSION})",
    "halfvec_l2_ops",
    "m='16'",
    "ef_construction='64'",
)
