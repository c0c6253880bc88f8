"""The search benchmark's synthetic archive (`facedb bench search`): clustered embeddings
loaded with COPY into a fresh database, and what the benchmark reads back."""

from __future__ import annotations

import io
import time

import numpy as np
from sqlalchemy import text

from ..weights import FROZEN_GRAPH_MODEL, embedder_spec
from .codec import EmbeddingRow, FaceRow, copy_embeddings, copy_faces
from .database import Database
from .sql import embedding_index

# The synthetic faces stand in for the default model's (its dimension, its search index).
SYNTHETIC_MODEL = FROZEN_GRAPH_MODEL


def load_faces(database: Database, vectors: np.ndarray, person: np.ndarray, say=print, chunk: int = 50_000) -> dict:
    """COPY the faces (and one photo per face, and the identities) in, then build the index:
    one build after the load is faster than growing the graph one row at a time."""
    timings: dict[str, float] = {}
    engine = database.engine
    index = embedding_index(SYNTHETIC_MODEL)
    with engine.begin() as conn:
        index_sql = conn.execute(text("SELECT pg_get_indexdef(CAST(:name AS regclass))"), {"name": index}).scalar_one()
        conn.execute(text(f"DROP INDEX {index}"))
        model = conn.execute(
            text(
                "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension) "
                "VALUES ('synthetic', :version, '-', 'clustered gaussian', :dimension) RETURNING id"
            ),
            {"version": SYNTHETIC_MODEL, "dimension": int(embedder_spec(SYNTHETIC_MODEL)["dimension"])},
        ).scalar_one()
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        n = len(vectors)
        cursor.copy_expert(
            "COPY photos (path, status, face_count) FROM STDIN",
            io.StringIO("".join(f"/synthetic/{i}.jpg\tindexed\t1\n" for i in range(n))),
        )
        cursor.execute("SELECT min(id) FROM photos")
        (first_photo,) = cursor.fetchone() or (1,)
        landmarks = [0.0] * 10
        for start in range(0, n, chunk):
            rows = range(start, min(n, start + chunk))
            # a fresh database: the faces take ids 1..n (the sequence moved past them below)
            copy_faces(cursor, (FaceRow(i + 1, first_photo + i, (0.0, 0.0, 1.0, 1.0), landmarks, 1.0) for i in rows))
            copy_embeddings(cursor, (EmbeddingRow(i + 1, SYNTHETIC_MODEL, model, vectors[i]) for i in rows))
            say(f"loaded {min(n, start + chunk)}/{n} faces")
        cursor.execute("SELECT setval(pg_get_serial_sequence('faces', 'id'), %s)", (max(n, 1),))
        people = int(person.max()) + 1
        cursor.copy_expert(
            "COPY identities (name) FROM STDIN", io.StringIO("".join(f"person {p}\n" for p in range(people)))
        )
        cursor.execute(
            """
            INSERT INTO face_identities (face_id, identity_id, source)
            SELECT f.id, i.id, 'enrolled' FROM faces f
            JOIN photos p ON p.id = f.photo_id
            JOIN identities i ON i.name = 'person ' || ((substring(p.path from '/synthetic/([0-9]+)')::int) / %s)""",
            (len(vectors) // people,),
        )
        raw.commit()
    finally:
        raw.close()
    timings["load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as conn:
        # The graph is built fastest when it fits in maintenance_work_mem (about 1.3 KB a face).
        memory = max(1024, len(vectors) * 1400 // 2**20 + 256)
        conn.execute(text(f"SET LOCAL maintenance_work_mem = '{memory}MB'"))
        conn.execute(text(index_sql))
        conn.execute(text("ANALYZE"))
    timings["index_build_s"] = time.perf_counter() - started
    timings["maintenance_work_mem_mb"] = memory
    with engine.connect() as conn:
        timings["index_mb"] = (
            conn.execute(text("SELECT pg_relation_size(CAST(:name AS regclass))"), {"name": index}).scalar_one() / 2**20
        )
        timings["table_mb"] = (
            conn.execute(
                text(
                    "SELECT pg_total_relation_size('faces') + pg_total_relation_size('face_embeddings') "
                    "- pg_relation_size(CAST(:name AS regclass))"
                ),
                {"name": index},
            ).scalar_one()
            / 2**20
        )
    return timings


def face_ids_in_load_order(database: Database) -> list[int]:
    with database.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM faces ORDER BY photo_id"))]


def identity_names(database: Database) -> dict[int, str | None]:
    with database.engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, name FROM identities")).all())
