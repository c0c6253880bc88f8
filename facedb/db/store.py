"""Every query facedb runs, in one place. Bulk writes use COPY; all SQL is parameterised."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from psycopg2.extras import execute_values
from sqlalchemy import Connection, text

from ..faces import Face
from ..images import PhotoMeta
from .database import Database


@dataclass(frozen=True)
class KnownFile:
    id: int
    size: int | None
    mtime_ns: int | None
    status: str
    content_hash: str | None


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None


# What indexing decided about one file; the store writes a batch of them in one transaction.
@dataclass(frozen=True)
class Indexed:
    file: FileStat
    meta: PhotoMeta
    faces: list[Face]


@dataclass(frozen=True)
class Failed:
    file: FileStat
    reason: str


@dataclass(frozen=True)
class CopyOf:
    """Same bytes as an indexed photo: reuse its faces instead of running the models again."""

    file: FileStat
    source_id: int


@dataclass(frozen=True)
class Moved:
    """Same bytes as an indexed photo whose old path is gone: keep its row, faces and names."""

    file: FileStat
    photo_id: int


@dataclass(frozen=True)
class Touched:
    """Path known, bytes unchanged, only size/mtime bookkeeping differs."""

    file: FileStat
    photo_id: int


Outcome = Indexed | Failed | CopyOf | Moved | Touched


@dataclass(frozen=True)
class Candidate:
    identity_id: int
    name: str | None
    distance: float
    face_id: int
    source: str


@dataclass(frozen=True)
class StoredFace:
    id: int
    photo_id: int
    box: tuple[float, float, float, float]
    score: float


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.8g}" for v in vector) + "]"


def _copy_field(value: object) -> str:
    """One field in PostgreSQL's COPY text format."""
    if value is None:
        return r"\N"
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine

    # ---- models -------------------------------------------------------------------------
    def embedding_model_id(self, name: str, version: str, sha256: str, preprocessing: str, dimension: int) -> int:
        with self.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension) "
                "VALUES (:name, :version, :sha256, :preprocessing, :dimension) ON CONFLICT DO NOTHING"),
                dict(name=name, version=version, sha256=sha256, preprocessing=preprocessing, dimension=dimension))
            return conn.execute(text(
                "SELECT id FROM embedding_models WHERE name = :name AND version = :version "
                "AND sha256 = :sha256 AND preprocessing = :preprocessing"),
                dict(name=name, version=version, sha256=sha256, preprocessing=preprocessing)).scalar_one()

    # ---- indexing -----------------------------------------------------------------------
    def known_files(self, paths: Sequence[str]) -> dict[str, KnownFile]:
        if not paths:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT path, id, size, mtime_ns, status, content_hash FROM photos WHERE path = ANY(:paths)"),
                {"paths": list(paths)})
            return {r.path: KnownFile(r.id, r.size, r.mtime_ns, r.status, r.content_hash) for r in rows}

    def indexed_by_hash(self, hashes: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        """content hash -> [(photo id, path)] of photos indexed with those bytes."""
        hashes = sorted(set(hashes))
        if not hashes:
            return {}
        found: dict[str, list[tuple[int, str]]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT content_hash, id, path FROM photos WHERE status = 'indexed' AND content_hash = ANY(:hashes) "
                "ORDER BY id"), {"hashes": hashes})
            for r in rows:
                found.setdefault(r.content_hash, []).append((r.id, r.path))
        return found

    def write(self, outcomes: Sequence[Outcome], embedding_model_id: int) -> dict[str, int]:
        """Store a batch in one transaction: a photo's faces are stored all together or not at all.
        Returns path -> photo id."""
        ids: dict[str, int] = {}
        if not outcomes:
            return ids
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                for outcome in outcomes:
                    if isinstance(outcome, (Moved, Touched)):
                        f = outcome.file
                        cursor.execute(
                            "UPDATE photos SET path = %s, size = %s, mtime_ns = %s, indexed_at = now() WHERE id = %s",
                            (f.path, f.size, f.mtime_ns, outcome.photo_id))
                        ids[f.path] = outcome.photo_id
                fresh = [o for o in outcomes if isinstance(o, (Indexed, Failed, CopyOf))]
                if fresh:
                    ids.update(self._upsert_photos(cursor, fresh))
                    cursor.execute("DELETE FROM faces WHERE photo_id = ANY(%s)", ([ids[o.file.path] for o in fresh],))
                    self._copy_faces(cursor, [(ids[o.file.path], o.faces) for o in fresh if isinstance(o, Indexed)],
                                     embedding_model_id)
                    for o in fresh:
                        if isinstance(o, CopyOf):
                            self._clone_photo(cursor, o.source_id, ids[o.file.path])
            finally:
                cursor.close()
        return ids

    @staticmethod
    def _upsert_photos(cursor, outcomes: Sequence[Indexed | Failed | CopyOf]) -> dict[str, int]:
        rows = []
        for o in outcomes:
            f = o.file
            if isinstance(o, Indexed):
                m = o.meta
                rows.append((f.path, f.content_hash, f.size, f.mtime_ns, m.width, m.height, m.format, m.taken_at,
                             m.camera, m.gps_lat, m.gps_lon, "indexed", None, len(o.faces)))
            elif isinstance(o, Failed):
                rows.append((f.path, f.content_hash, f.size, f.mtime_ns, None, None, None, None, None, None, None,
                             "failed", o.reason, 0))
            else:  # CopyOf: metadata is filled from the source below
                rows.append((f.path, f.content_hash, f.size, f.mtime_ns, None, None, None, None, None, None, None,
                             "indexed", None, 0))
        returned = execute_values(cursor, """
            INSERT INTO photos (path, content_hash, size, mtime_ns, width, height, format, taken_at, camera,
                                gps_lat, gps_lon, status, error, face_count)
            VALUES %s
            ON CONFLICT (path) DO UPDATE SET
                content_hash = EXCLUDED.content_hash, size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns,
                width = EXCLUDED.width, height = EXCLUDED.height, format = EXCLUDED.format,
                taken_at = EXCLUDED.taken_at, camera = EXCLUDED.camera, gps_lat = EXCLUDED.gps_lat,
                gps_lon = EXCLUDED.gps_lon, status = EXCLUDED.status, error = EXCLUDED.error,
                face_count = EXCLUDED.face_count, indexed_at = now()
            RETURNING path, id""", rows, fetch=True)
        return {path: photo_id for path, photo_id in returned}

    @staticmethod
    def _copy_faces(cursor, photos: Sequence[tuple[int, list[Face]]], embedding_model_id: int) -> None:
        buffer = io.StringIO()
        for photo_id, faces in photos:
            for face in faces:
                d = face.detection
                landmarks = "{" + ",".join(f"{v:.2f}" for point in d.landmarks for v in point) + "}"
                fields = (photo_id, f"{d.box[0]:.2f}", f"{d.box[1]:.2f}", f"{d.box[2]:.2f}", f"{d.box[3]:.2f}",
                          landmarks, f"{d.score:.6f}", vector_literal(face.embedding), embedding_model_id,
                          face.thumbnail or None)
                buffer.write("\t".join(_copy_field(v) for v in fields) + "\n")
        if buffer.tell():
            buffer.seek(0)
            cursor.copy_expert(
                "COPY faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding, "
                "embedding_model_id, thumbnail) FROM STDIN", buffer)

    @staticmethod
    def _clone_photo(cursor, source_id: int, target_id: int) -> None:
        cursor.execute("""
            UPDATE photos t SET width = s.width, height = s.height, format = s.format, taken_at = s.taken_at,
                   camera = s.camera, gps_lat = s.gps_lat, gps_lon = s.gps_lon, face_count = s.face_count
            FROM photos s WHERE s.id = %s AND t.id = %s""", (source_id, target_id))
        cursor.execute("""
            INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding,
                               embedding_model_id, thumbnail)
            SELECT %s, box_x, box_y, box_w, box_h, landmarks, score, embedding, embedding_model_id, thumbnail
            FROM faces WHERE photo_id = %s ORDER BY id""", (target_id, source_id))

    # ---- faces and identities -----------------------------------------------------------
    def faces_of_photo(self, photo_id: int) -> list[StoredFace]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, photo_id, box_x, box_y, box_w, box_h, score FROM faces WHERE photo_id = :id ORDER BY id"),
                {"id": photo_id})
            return [StoredFace(r.id, r.photo_id, (r.box_x, r.box_y, r.box_w, r.box_h), r.score) for r in rows]

    def assign(self, name: str, face_ids: Sequence[int], source: str) -> int:
        """Put faces into the identity called `name` (created if new); returns its id."""
        with self.engine.begin() as conn:
            identity_id = self._identity_id(conn, name)
            if face_ids:
                conn.execute(text("""
                    INSERT INTO face_identities (face_id, identity_id, source)
                    SELECT unnest(CAST(:faces AS bigint[])), :identity, :source
                    ON CONFLICT (face_id) DO UPDATE SET identity_id = EXCLUDED.identity_id,
                        source = EXCLUDED.source, assigned_at = now()"""),
                    {"faces": list(face_ids), "identity": identity_id, "source": source})
            return identity_id

    @staticmethod
    def _identity_id(conn: Connection, name: str) -> int:
        conn.execute(text("INSERT INTO identities (name) VALUES (:name) ON CONFLICT (name) DO NOTHING"), {"name": name})
        return conn.execute(text("SELECT id FROM identities WHERE name = :name"), {"name": name}).scalar_one()

    def nearest_identities(self, embedding: np.ndarray, top_k: int, ef_search: int = 100) -> list[Candidate]:
        """The nearest face of each of the `top_k` nearest identities (never one identity twice)."""
        query = vector_literal(embedding)
        with self.engine.begin() as conn:
            assigned = conn.execute(text("SELECT count(*) FROM face_identities")).scalar_one()
            if assigned == 0:
                return []
            self._tune_search(conn, ef_search)
            limit = max(50, top_k * 20)
            while True:
                rows = conn.execute(text("""
                    SELECT fi.identity_id, i.name, fi.source, f.id AS face_id,
                           f.embedding <-> CAST(:q AS vector) AS distance
                    FROM faces f
                    JOIN face_identities fi ON fi.face_id = f.id
                    JOIN identities i ON i.id = fi.identity_id
                    ORDER BY f.embedding <-> CAST(:q AS vector)
                    LIMIT :limit"""), {"q": query, "limit": limit}).all()
                best: dict[int, Candidate] = {}
                for r in rows:
                    if r.identity_id not in best:
                        best[r.identity_id] = Candidate(r.identity_id, r.name, float(r.distance), r.face_id, r.source)
                # One identity with many close faces can fill the whole window: widen it until
                # enough distinct identities appear or every assigned face has been seen.
                if len(best) >= top_k or limit >= assigned:
                    return sorted(best.values(), key=lambda c: c.distance)[:top_k]
                limit *= 4

    def faces_within(self, embedding: np.ndarray, identity_ids: Sequence[int], threshold: float) -> dict[int, tuple[int, int]]:
        """identity id -> (faces within threshold, all faces), counted exactly."""
        if not identity_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(text("""
                SELECT fi.identity_id,
                       count(*) FILTER (WHERE f.embedding <-> CAST(:q AS vector) <= :threshold) AS near,
                       count(*) AS total
                FROM face_identities fi JOIN faces f ON f.id = fi.face_id
                WHERE fi.identity_id = ANY(:ids)
                GROUP BY fi.identity_id"""),
                {"q": vector_literal(embedding), "threshold": threshold, "ids": list(identity_ids)})
            return {r.identity_id: (r.near, r.total) for r in rows}

    @staticmethod
    def _tune_search(conn: Connection, ef_search: int) -> None:
        conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(ef_search)})
        # pgvector >= 0.8 can keep scanning the index when the join filters rows out.
        version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
        if version and tuple(int(p) for p in version.split(".")[:2]) >= (0, 8):
            conn.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))

    # ---- reports ------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            row = conn.execute(text("""
                SELECT (SELECT count(*) FROM photos) AS photos,
                       (SELECT count(*) FROM photos WHERE status = 'indexed') AS indexed,
                       (SELECT count(*) FROM photos WHERE status = 'failed') AS failed,
                       (SELECT count(*) FROM faces) AS faces,
                       (SELECT count(*) FROM identities) AS identities,
                       (SELECT count(*) FROM face_identities) AS assigned_faces""")).one()
            return dict(row._mapping)

    def failures(self) -> list[tuple[str, str, datetime]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT path, error, indexed_at FROM photos WHERE status = 'failed' ORDER BY path"))
            return [(r.path, r.error, r.indexed_at) for r in rows]

    def identities(self) -> list[tuple[int, str | None, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("""
                SELECT i.id, i.name, count(fi.face_id) AS faces FROM identities i
                LEFT JOIN face_identities fi ON fi.identity_id = i.id GROUP BY i.id ORDER BY i.name""")).all()
            return [(r.id, r.name, r.faces) for r in rows]
