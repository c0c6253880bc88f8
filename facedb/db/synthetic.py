"""The search benchmark's synthetic archive (`facedb bench search`): clustered embeddings
loaded with COPY into a fresh database, and what the benchmark reads back."""

from __future__ import annotations

import io
import time
from collections.abc import Iterable

import numpy as np
from sqlalchemy import text

from ..vision.weights import FROZEN_GRAPH_MODEL, embedder_spec
from .codec import EmbeddingRow, FaceRow, copy_embeddings, copy_faces
from .database import Database
from .sql import embedding_index

# The synthetic faces stand in for the default model's (its dimension, its search index).
SYNTHETIC_MODEL = FROZEN_GRAPH_MODEL


# What an archive's rows hold besides the embedding, measured on the test photos: faces per
# photo, and the face thumbnails' bytes (96 px WebP: mean 1,217, 95th percentile 1,608).
FACES_PER_PHOTO = 2
THUMBNAIL_BYTES = (1217, 250)  # mean, standard deviation


def load_faces(
    database: Database, blocks: Iterable[np.ndarray], faces: int, people: int, say=print, chunk: int = 50_000
) -> dict:
    """COPY the faces in (`blocks` of vectors, `faces` in all, of people 0..people-1 with
    faces // people each, in order), with rows like an archive's: a photo for every
    FACES_PER_PHOTO faces, with a path, hashes, EXIF and size; a box, landmarks and a thumbnail
    of a real one's size for each face; its person. The model's search index is dropped first
    (search_index.build makes it after: one build is faster than growing the graph a row at a
    time). Faces get the ids 1..faces in order; returns the seconds and the first person's id."""
    per_person = faces // people
    engine = database.engine
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {embedding_index(SYNTHETIC_MODEL)}"))
        model = conn.execute(
            text(
                "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension) "
                "VALUES ('synthetic', :version, '-', 'clustered gaussian', :dimension) RETURNING id"
            ),
            {"version": SYNTHETIC_MODEL, "dimension": int(embedder_spec(SYNTHETIC_MODEL)["dimension"])},
        ).scalar_one()
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        photos = -(-faces // FACES_PER_PHOTO)
        for start in range(0, photos, chunk):
            cursor.copy_expert(
                "COPY photos (path, content_hash, size, mtime_ns, width, height, format, taken_at, camera, "
                "status, face_count, phash) FROM STDIN",
                io.StringIO("".join(_photo_line(i, rng) for i in range(start, min(photos, start + chunk)))),
            )
        cursor.execute("SELECT min(id) FROM photos")
        (first_photo,) = cursor.fetchone() or (1,)
        cursor.copy_expert(
            "COPY identities (name) FROM STDIN", io.StringIO("".join(f"person {p}\n" for p in range(people)))
        )
        cursor.execute("SELECT min(id) FROM identities")
        (first_identity,) = cursor.fetchone() or (1,)
        done = 0
        for block in blocks:
            rows = range(done, done + len(block))
            # a fresh database: the faces take ids 1..n (the sequence moved past them below)
            copy_faces(
                cursor,
                (
                    FaceRow(
                        i + 1,
                        first_photo + i // FACES_PER_PHOTO,
                        (1200.0 + i % 7, 900.0, 180.0, 220.0),
                        rng.uniform(900, 1400, 10).round(1).tolist(),
                        0.999,
                        _thumbnail(rng),
                    )
                    for i in rows
                ),
            )
            copy_embeddings(cursor, (EmbeddingRow(i + 1, SYNTHETIC_MODEL, model, block[i - done]) for i in rows))
            cursor.copy_expert(
                "COPY face_identities (face_id, identity_id, source) FROM STDIN",
                io.StringIO("".join(f"{i + 1}\t{first_identity + i // per_person}\tenrolled\n" for i in rows)),
            )
            done += len(block)
            if done % chunk < len(block) or done == faces:
                raw.commit()
                say(f"loaded {done:,}/{faces:,} faces, {done / (time.perf_counter() - started):,.0f} a second")
        cursor.execute("SELECT setval(pg_get_serial_sequence('faces', 'id'), %s)", (max(done, 1),))
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return {"load_s": time.perf_counter() - started, "first_identity": first_identity}


def _photo_line(i: int, rng: np.random.Generator) -> str:
    year, month, day = 2005 + i % 20, 1 + i % 12, 1 + i % 28
    path = f"/home/user/Pictures/{year}/{year}-{month:02d}-{day:02d} Holiday/IMG_{i:08d}.jpg"
    digest = rng.bytes(32).hex()
    taken = f"{year}-{month:02d}-{day:02d} 12:{i % 60:02d}:{i // 60 % 60:02d}"
    phash = int(rng.integers(-(2**63), 2**63 - 1))
    size, mtime = 3_000_000 + i % 4_000_000, 1_500_000_000_000_000_000 + i
    return f"{path}\t{digest}\t{size}\t{mtime}\t4000\t3000\tJPEG\t{taken}\tCanon EOS 5D Mark IV\tindexed\t{FACES_PER_PHOTO}\t{phash}\n"


def _thumbnail(rng: np.random.Generator) -> bytes:
    """Bytes of a real thumbnail's size (WebP does not compress further, nor do these)."""
    size = int(np.clip(rng.normal(*THUMBNAIL_BYTES), 400, 4000))
    return b"RIFF" + (size - 8).to_bytes(4, "little") + b"WEBP" + rng.bytes(size - 12)


ARCHIVE_TABLES = ("photos", "faces", "face_embeddings", "face_identities", "identities")


def relation_sizes(database: Database) -> dict[str, int]:
    """Bytes on disk of each table of the archive (with its TOAST, free space and visibility
    maps) and, separately, of each of their indexes."""
    with database.engine.connect() as conn:
        tables = {
            name: conn.execute(text("SELECT pg_table_size(CAST(:t AS regclass))"), {"t": name}).scalar_one()
            for name in ARCHIVE_TABLES
        }
        indexes: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = ANY(CAST(:tables AS regclass[]))"
                ),
                {"tables": list(ARCHIVE_TABLES)},
            ).all()
        )
    return tables | indexes


def unassign_every(database: Database, step: int) -> None:
    """Every `step`-th face loses its person and comes back as a face of nobody, new since the
    last clustering (the incremental clustering's benchmark)."""
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM face_identities WHERE face_id % :step = 0"), {"step": step})
        conn.execute(text("DELETE FROM database_settings WHERE name = 'clustered_through_face'"))


def backend_pid(database: Database) -> int:
    """The process of a server connection (its parent is the server's postmaster)."""
    with database.engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
