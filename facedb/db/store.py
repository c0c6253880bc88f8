"""Indexing and what it reads back: photos and faces written in batches (binary COPY), files
known by path and by content, faces and their identities, counts; the nearest faces and
people of an embedding are `Store.nearest` (nearest.py). All SQL is parameterised;
facedb/db/ is the only package that talks to the database."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection, text

from ..faces import Face
from ..records import (
    FAILED,
    INDEXED,
    CopyOf,
    Failed,
    Indexed,
    KnownFile,
    Moved,
    Outcome,
    StoredFace,
    Touched,
)
from .codec import EmbeddingRow, FaceRow, copy_embeddings, copy_faces, face_ids
from .database import Database
from .nearest import Nearest
from .sql import FAILED_SQL, INDEXED_SQL

ARCHIVE_COUNTS = ("photos", "failed_photos", "faces", "identities", "assigned_faces")
_COUNT_EVERY_ROW = f"""
    SELECT 'photos', count(*) FROM photos UNION ALL
    SELECT 'failed_photos', count(*) FROM photos WHERE status = {FAILED_SQL} UNION ALL
    SELECT 'faces', count(*) FROM faces UNION ALL
    SELECT 'identities', count(*) FROM identities UNION ALL
    SELECT 'assigned_faces', count(*) FROM face_identities UNION ALL
    SELECT 'embeddings:' || embedding_model_id, count(*) FROM face_embeddings GROUP BY embedding_model_id"""


class Claims:
    """The photos one indexing run is working on, claimed in PostgreSQL (an advisory lock on
    each path's hash, held by a connection of the run's own), so that another run at the same
    time (another process, the service's index jobs) leaves them to it and comes back once the
    claim is given up: nobody does the work twice, and nobody replaces the faces another run
    stored (their ids stay). A run that dies gives its claims up with its connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def take(self, paths: Sequence[str]) -> set[str]:
        """Claims what nobody else holds now; returns the paths claimed."""
        if not paths:
            return set()
        rows = self._conn.execute(
            text(
                "SELECT p FROM unnest(CAST(:paths AS text[])) AS p WHERE pg_try_advisory_lock(hashtextextended(p, 0))"
            ),
            {"paths": list(paths)},
        )
        return {r.p for r in rows}

    def wait(self, paths: Sequence[str]) -> None:
        """Claims them, waiting for whoever holds them (one at a time, in order: two runs
        waiting for each other's claims would otherwise wait for ever)."""
        for path in sorted(set(paths)):
            self._conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:p, 0))"), {"p": path})

    def give_up(self) -> None:
        self._conn.execute(text("SELECT pg_advisory_unlock_all()"))


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine  # the primary: every write, and reads that must be current
        self.reads = database.reads  # who, search and listings: a replica that has caught up, else the primary
        self.nearest = Nearest(database)

    @contextmanager
    def claims(self) -> Iterator[Claims]:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:
                yield Claims(conn)
            finally:
                if not conn.closed and not conn.invalidated:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock_all()"))  # the pool keeps the connection
                    except Exception:  # noqa: BLE001 - a lost connection gave its locks up already
                        conn.invalidate()

    # ---- models -------------------------------------------------------------------------
    def embedding_model_id(
        self, name: str, version: str, sha256: str, preprocessing: str, dimension: int, runtime: str
    ) -> int:
        key = dict(name=name, version=version, sha256=sha256, preprocessing=preprocessing, runtime=runtime)
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension, runtime) "
                    "VALUES (:name, :version, :sha256, :preprocessing, :dimension, :runtime) ON CONFLICT DO NOTHING"
                ),
                key | {"dimension": dimension},
            )
            return conn.execute(
                text(
                    "SELECT id FROM embedding_models WHERE name = :name AND version = :version "
                    "AND sha256 = :sha256 AND preprocessing = :preprocessing AND runtime = :runtime"
                ),
                key,
            ).scalar_one()

    # ---- indexing -----------------------------------------------------------------------
    def known_files(self, paths: Sequence[str]) -> dict[str, KnownFile]:
        if not paths:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT path, id, size, mtime_ns, status, content_hash FROM photos WHERE path = ANY(:paths)"),
                {"paths": list(paths)},
            )
            return {r.path: KnownFile(r.id, r.size, r.mtime_ns, r.status, r.content_hash) for r in rows}

    def indexed_by_hash(self, hashes: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        """content hash -> [(photo id, path)] of photos indexed with those bytes."""
        hashes = sorted(set(hashes))
        if not hashes:
            return {}
        found: dict[str, list[tuple[int, str]]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT content_hash, id, path FROM photos WHERE status = {INDEXED_SQL} AND content_hash = ANY(:hashes) "
                    "ORDER BY id"
                ),
                {"hashes": hashes},
            )
            for r in rows:
                found.setdefault(r.content_hash, []).append((r.id, r.path))
        return found

    def write(self, outcomes: Sequence[Outcome], embedding_model_id: int, model: str) -> dict[str, int]:
        """Store a batch in one transaction: a photo's faces are stored all together or not at all.
        Returns path -> photo id."""
        ids: dict[str, int] = {}
        if not outcomes:
            return ids
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]  # open: inside begin()
            try:
                for outcome in outcomes:
                    if isinstance(outcome, (Moved, Touched)):
                        f = outcome.file
                        cursor.execute(
                            "UPDATE photos SET path = %s, size = %s, mtime_ns = %s, indexed_at = now() WHERE id = %s",
                            (f.path, f.size, f.mtime_ns, outcome.photo_id),
                        )
                        ids[f.path] = outcome.photo_id
                fresh = [o for o in outcomes if isinstance(o, (Indexed, Failed, CopyOf))]
                if fresh:
                    ids.update(self._upsert_photos(cursor, fresh))
                    cursor.execute("DELETE FROM faces WHERE photo_id = ANY(%s)", ([ids[o.file.path] for o in fresh],))
                    self._copy_faces(
                        cursor,
                        [(ids[o.file.path], o.faces) for o in fresh if isinstance(o, Indexed)],
                        embedding_model_id,
                        model,
                    )
                    for o in fresh:
                        if isinstance(o, CopyOf):
                            self._clone_photo(cursor, o.source_id, ids[o.file.path])
                    tagged = [(ids[o.file.path], o.tagged) for o in fresh if isinstance(o, Indexed) and o.tagged]
                    if tagged:
                        self._assign_tagged(cursor, tagged)
            finally:
                cursor.close()
        return ids

    @staticmethod
    def _upsert_photos(cursor, outcomes: Sequence[Indexed | Failed | CopyOf]) -> dict[str, int]:
        no_meta = (None,) * 7  # width, height, format, taken_at, camera, gps_lat, gps_lon
        rows: list[tuple[Any, ...]] = []
        for o in outcomes:
            f = o.file
            file = (f.path, f.content_hash, f.size, f.mtime_ns)
            if isinstance(o, Indexed):
                m = o.meta
                meta = (m.width, m.height, m.format, m.taken_at, m.camera, m.gps_lat, m.gps_lon)
                rows.append((*file, *meta, INDEXED, None, len(o.faces), m.phash))
            elif isinstance(o, Failed):
                rows.append((*file, *no_meta, FAILED, o.reason, 0, None))
            else:  # CopyOf: metadata is filled from the source below
                rows.append((*file, *no_meta, INDEXED, None, 0, None))
        returned = execute_values(
            cursor,
            """
            INSERT INTO photos (path, content_hash, size, mtime_ns, width, height, format, taken_at, camera,
                                gps_lat, gps_lon, status, error, face_count, phash)
            VALUES %s
            ON CONFLICT (path) DO UPDATE SET
                content_hash = EXCLUDED.content_hash, size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns,
                width = EXCLUDED.width, height = EXCLUDED.height, format = EXCLUDED.format,
                taken_at = EXCLUDED.taken_at, camera = EXCLUDED.camera, gps_lat = EXCLUDED.gps_lat,
                gps_lon = EXCLUDED.gps_lon, status = EXCLUDED.status, error = EXCLUDED.error,
                face_count = EXCLUDED.face_count, phash = EXCLUDED.phash, indexed_at = now()
            RETURNING path, id""",
            rows,
            fetch=True,
        )
        return {path: photo_id for path, photo_id in returned}

    @staticmethod
    def _copy_faces(cursor, photos: Sequence[tuple[int, list[Face]]], embedding_model_id: int, model: str) -> None:
        faces = [(photo_id, face) for photo_id, photo_faces in photos for face in photo_faces]
        if not faces:
            return
        ids = face_ids(cursor, len(faces))
        copy_faces(
            cursor,
            [
                FaceRow(
                    face_id,
                    photo_id,
                    face.detection.box,
                    [v for point in face.detection.landmarks for v in point],
                    face.detection.score,
                    face.thumbnail or None,
                )
                for face_id, (photo_id, face) in zip(ids, faces)
            ],
        )
        copy_embeddings(
            cursor,
            [EmbeddingRow(face_id, model, embedding_model_id, face.vector) for face_id, (_, face) in zip(ids, faces)],
        )

    @staticmethod
    def _assign_tagged(cursor, photos: Sequence[tuple[int, dict[int, str]]]) -> None:
        """Faces named by their photo's XMP face tags are a person's decision: the person is
        created or extended, the face confirmed (in the batch's transaction)."""
        for photo_id, names in photos:
            cursor.execute("SELECT id FROM faces WHERE photo_id = %s ORDER BY id", (photo_id,))
            face_ids = [row[0] for row in cursor.fetchall()]  # in the order they were copied in
            for place, name in sorted(names.items()):
                cursor.execute("INSERT INTO identities (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
                cursor.execute(
                    "INSERT INTO face_identities (face_id, identity_id, source) "
                    "SELECT %s, id, 'confirmed' FROM identities WHERE name = %s "
                    "ON CONFLICT (face_id) DO UPDATE SET identity_id = EXCLUDED.identity_id, source = 'confirmed'",
                    (face_ids[place], name),
                )

    @staticmethod
    def _clone_photo(cursor, source_id: int, target_id: int) -> None:
        cursor.execute(
            """
            UPDATE photos t SET width = s.width, height = s.height, format = s.format, taken_at = s.taken_at,
                   camera = s.camera, gps_lat = s.gps_lat, gps_lon = s.gps_lon, face_count = s.face_count,
                   phash = s.phash
            FROM photos s WHERE s.id = %s AND t.id = %s""",
            (source_id, target_id),
        )
        cursor.execute("SELECT id FROM faces WHERE photo_id = %s ORDER BY id", (source_id,))
        sources = [row[0] for row in cursor.fetchall()]
        if not sources:
            return
        copies = face_ids(cursor, len(sources))
        cursor.execute(
            """
            INSERT INTO faces (id, photo_id, box_x, box_y, box_w, box_h, landmarks, score, thumbnail)
            SELECT n.new, %s, f.box_x, f.box_y, f.box_w, f.box_h, f.landmarks, f.score, f.thumbnail
            FROM unnest(%s::bigint[], %s::bigint[]) AS n(old, new) JOIN faces f ON f.id = n.old ORDER BY n.new""",
            (target_id, sources, copies),
        )
        cursor.execute(
            """
            INSERT INTO face_embeddings (face_id, model, embedding_model_id, embedding)
            SELECT n.new, e.model, e.embedding_model_id, e.embedding
            FROM unnest(%s::bigint[], %s::bigint[]) AS n(old, new) JOIN face_embeddings e ON e.face_id = n.old""",
            (sources, copies),
        )

    # ---- faces and identities -----------------------------------------------------------
    def file_changed_by_us(self, photo_id: int, size: int, mtime_ns: int, content_hash: str) -> None:
        """The photo's bytes changed but not its pixels (facedb wrote its XMP): the next index
        must not take it for a new photo."""
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE photos SET size = :size, mtime_ns = :mtime, content_hash = :hash WHERE id = :id"),
                {"size": size, "mtime": mtime_ns, "hash": content_hash, "id": photo_id},
            )

    def photo_size(self, photo_id: int) -> tuple[int | None, int | None]:
        """(width, height) of the photo as its faces' boxes see it (upright)."""
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT width, height FROM photos WHERE id = :id"), {"id": photo_id}).one()
            return row.width, row.height

    def faces_of_photo(self, photo_id: int) -> list[StoredFace]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, photo_id, box_x, box_y, box_w, box_h, score FROM faces WHERE photo_id = :id ORDER BY id"
                ),
                {"id": photo_id},
            )
            return [StoredFace(r.id, r.photo_id, (r.box_x, r.box_y, r.box_w, r.box_h), r.score) for r in rows]

    def assign(self, name: str, face_ids: Sequence[int], source: str) -> int:
        """Put faces into the identity called `name` (created if new); returns its id."""
        with self.engine.begin() as conn:
            identity_id = self._identity_id(conn, name)
            if face_ids:
                conn.execute(
                    text("""
                    INSERT INTO face_identities (face_id, identity_id, source)
                    SELECT unnest(CAST(:faces AS bigint[])), :identity, :source
                    ON CONFLICT (face_id) DO UPDATE SET identity_id = EXCLUDED.identity_id,
                        source = EXCLUDED.source, assigned_at = now()"""),
                    {"faces": list(face_ids), "identity": identity_id, "source": source},
                )
            return identity_id

    @staticmethod
    def _identity_id(conn: Connection, name: str) -> int:
        conn.execute(text("INSERT INTO identities (name) VALUES (:name) ON CONFLICT (name) DO NOTHING"), {"name": name})
        return conn.execute(text("SELECT id FROM identities WHERE name = :name"), {"name": name}).scalar_one()

    # ---- reports ------------------------------------------------------------------------
    def photo_path(self, photo_id: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT path FROM photos WHERE id = :id"), {"id": photo_id}).scalar()

    def face_thumbnail(self, face_id: int) -> tuple[bytes, str] | None:
        with self.reads.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT f.thumbnail, p.path FROM faces f JOIN photos p ON p.id = f.photo_id "
                    "WHERE f.id = :id AND f.thumbnail IS NOT NULL"
                ),
                {"id": face_id},
            ).first()
        return None if row is None else (bytes(row.thumbnail), row.path)

    def photos_under(self, folders: Sequence[str]) -> list[tuple[int, str]]:
        """(id, path) of the stored photos at or under these paths (files or folders)."""
        with self.engine.connect() as conn:
            return [
                (r.id, r.path)
                for r in conn.execute(
                    text("""
                    SELECT id, path FROM photos
                    WHERE path = ANY(:paths) OR EXISTS (
                        SELECT 1 FROM unnest(CAST(:folders AS text[])) AS f(folder) WHERE starts_with(path, f.folder))
                    ORDER BY id"""),
                    {"paths": list(folders), "folders": [os.path.join(f, "") for f in folders]},
                )
            ]

    def forget_photos(self, photo_ids: Sequence[int]) -> int:
        """Delete these photos with their faces, embeddings and places in people (one
        transaction); returns how many were deleted."""
        if not photo_ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(text("DELETE FROM photos WHERE id = ANY(:ids)"), {"ids": list(photo_ids)}).rowcount

    def answers(self) -> bool:
        """The database takes a query (`/healthz`): one round trip, whatever the archive's size."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    # Stored counts (migrations 0012 and 0013): changes appended by triggers, summed when read; past this
    # many changes the primary folds them into one row a count.
    COUNT_CHANGES_KEPT = 10_000

    def counts(self) -> dict[str, int]:
        """Photos (indexed, failed), faces, identities and assigned faces, from the stored counts."""
        with self.reads.connect() as conn:
            rows: dict[str, int] = dict(
                conn.execute(text("SELECT name, sum(change) FROM archive_count_changes GROUP BY name")).all()
            )
            changes = conn.execute(
                text("SELECT count(*) FROM (SELECT 1 FROM archive_count_changes LIMIT :n) c"),
                {"n": self.COUNT_CHANGES_KEPT + 1},
            ).scalar_one()
        if changes > self.COUNT_CHANGES_KEPT:
            self.fold_counts()
        stored = {name: int(rows.get(name) or 0) for name in ARCHIVE_COUNTS}
        return {
            "photos": stored["photos"],
            "indexed": stored["photos"] - stored["failed_photos"],
            "failed": stored["failed_photos"],
            "faces": stored["faces"],
            "identities": stored["identities"],
            "assigned_faces": stored["assigned_faces"],
        }

    def fold_counts(self) -> None:
        """One row a count for all the changes so far (those appended meanwhile stay as they are)."""
        with self.engine.begin() as conn:
            conn.execute(
                text("""
                WITH gone AS (DELETE FROM archive_count_changes RETURNING name, change)
                INSERT INTO archive_count_changes (name, change) SELECT name, sum(change) FROM gone GROUP BY name""")
            )

    def counted(self) -> dict[str, int]:
        """The stored counts made again by counting every row (`facedb check`)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(text(_COUNT_EVERY_ROW)).all())

    def stored_counts(self) -> dict[str, int]:
        """Every stored count: the archive's and the embeddings' by how they were made
        ('embeddings:<embedding_models.id>', migration 0013)."""
        with self.engine.connect() as conn:
            rows: dict[str, int] = dict(
                conn.execute(text("SELECT name, sum(change) FROM archive_count_changes GROUP BY name")).all()
            )
        return {name: int(rows.get(name) or 0) for name in ARCHIVE_COUNTS} | {
            name: int(n) for name, n in rows.items() if name.startswith("embeddings:") and n
        }

    def recount(self) -> None:
        """Replace the stored counts by counting every row (`facedb check --fix`)."""
        with self.engine.begin() as conn:
            conn.execute(text("LOCK TABLE photos, faces, identities, face_identities, face_embeddings IN SHARE MODE"))
            conn.execute(text("DELETE FROM archive_count_changes"))
            conn.execute(text(f"INSERT INTO archive_count_changes (name, change) {_COUNT_EVERY_ROW}"))

    def failure_reasons(self, photo_ids: Sequence[int]) -> dict[int, str]:
        """The recorded reason of each of these photos that failed."""
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    text(f"SELECT id, error FROM photos WHERE id = ANY(:ids) AND status = {FAILED_SQL}"),
                    {"ids": list(photo_ids)},
                ).all()
            )

    def failures(self) -> list[tuple[str, str, datetime]]:
        with self.reads.connect() as conn:
            rows = conn.execute(
                text(f"SELECT path, error, indexed_at FROM photos WHERE status = {FAILED_SQL} ORDER BY path")
            )
            return [(r.path, r.error, r.indexed_at) for r in rows]

    def identities(self) -> list[tuple[int, str | None, int]]:
        with self.reads.connect() as conn:
            rows = conn.execute(
                text("""
                SELECT i.id, i.name, count(fi.face_id) AS faces FROM identities i
                LEFT JOIN face_identities fi ON fi.identity_id = i.id GROUP BY i.id ORDER BY i.name""")
            ).all()
            return [(r.id, r.name, r.faces) for r in rows]
