"""The words of the stored data as SQL, the search index's name and the newest schema
revision: what the queries share, without the ORM models of schema.py."""

from __future__ import annotations

import re

from ..records import HUMAN_SOURCES, PHOTO_STATUSES, SYSTEM_SOURCES

# The newest migration (migrations/versions/); tests/test_schema.py checks it is Alembic's head.
# A database at this revision is opened without loading Alembic (0.35 s of every start).
SCHEMA_HEAD = "0014"


def sql_list(words: tuple[str, ...]) -> str:
    """A tuple of this module's own words as an SQL list: ('a', 'b'). Never for user text."""
    return "(" + ", ".join(f"'{w}'" for w in words) + ")"


INDEXED_SQL, FAILED_SQL = (f"'{status}'" for status in PHOTO_STATUSES)  # as SQL literals
HUMAN_SOURCES_SQL = sql_list(HUMAN_SOURCES)
SYSTEM_SOURCES_SQL = sql_list(SYSTEM_SOURCES)

# One search index per model over face_embeddings (migration 0009), partial, on the rows of
# that model: its kinds and definitions are in search_index.py.
_MODEL_KEY = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")


def model_literal(model: str) -> str:
    """A model key of the manifest as an SQL literal (the partial index is used only when the
    query names the model as a constant). Never for user text: keys are checked anyway."""
    if not _MODEL_KEY.fullmatch(model):
        raise ValueError(f"not a model key: {model!r}")
    return f"'{model}'"


def embedding_index(model: str) -> str:
    model_literal(model)
    return "face_embeddings_hnsw_" + re.sub(r"[^0-9A-Za-z]", "_", model)
