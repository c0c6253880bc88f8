"""Every query facedb runs, in one place. Bulk writes use COPY; all SQL is parameterised."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from psycopg2.extras import execute_values
from sqlalchemy import Connection, text

from ..faces import Face
from ..images import PhotoMeta
from .database import Database
from .schema import EMBEDDING_DIMENSION, EMBEDDING_INDEX, EMBEDDING_INDEX_DDL, EMBEDDING_INDEX_PARTS


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


_PGVECTOR_VERSIONS: dict[str, tuple[int, ...]] = {}


def _pgvector_version(conn: Connection) -> tuple[int, ...]:
    """pgvector's version, asked once per database."""
    key = conn.engine.url.render_as_string(hide_password=True)
    if key not in _PGVECTOR_VERSIONS:
        version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar() or "0"
        _PGVECTOR_VERSIONS[key] = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return _PGVECTOR_VERSIONS[key]


# The HNSW index is on the embeddings cast to half precision (migration 0005); a query uses it
# only when it orders by exactly that expression.
_HALF = f"halfvec({EMBEDDING_DIMENSION})"


def nearest_to(column: str, other: str) -> str:
    """ORDER BY expression that the HNSW index serves: `column` and `other` are SQL (never user text)."""
    return f"{column}::{_HALF} <-> {other}::{_HALF}"


NEAREST_TO_QUERY = nearest_to("f.embedding", "CAST(:q AS vector)")


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.9g}" for v in vector) + "]"  # 9 digits: float32 round-trips exactly


@dataclass
class FaceRow:
    photo_id: int
    box: tuple[float, float, float, float]
    landmarks: Sequence[float]
    score: float
    embedding: np.ndarray
    embedding_model_id: int
    thumbnail: bytes | None = None


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_FLOAT4_OID = 700
FACE_COLUMNS = "photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding, embedding_model_id, thumbnail"


def encode_face_rows(rows: Iterable[FaceRow]) -> bytes:
    """Faces in PostgreSQL's binary COPY format: no number is ever printed and parsed back
    (text COPY spent 0.28 ms formatting each 512-d vector)."""
    parts = [_COPY_HEADER]
    for row in rows:
        landmarks = np.asarray(row.landmarks, ">f4")
        embedding = np.asarray(row.embedding, ">f4")
        parts.append(struct.pack(">hiq", 10, 8, row.photo_id))
        parts.append(struct.pack(">ififififi", 4, row.box[0], 4, row.box[1], 4, row.box[2], 4, row.box[3],
                                 20 + 8 * len(landmarks) if len(landmarks) else 12))
        # a one-dimensional float4 array (an empty one has no dimensions)
        parts.append(struct.pack(">iiiii", 1, 0, _FLOAT4_OID, len(landmarks), 1) if len(landmarks)
                     else struct.pack(">iii", 0, 0, _FLOAT4_OID))
        elements = np.full(2 * len(landmarks), 4, ">i4")  # each element: its length (4), then the float4
        elements[1::2] = landmarks.view(">i4")
        parts.append(elements.tobytes())
        parts.append(struct.pack(">ifihh", 4, row.score, 4 + 4 * len(embedding), len(embedding), 0))
        parts.append(embedding.tobytes())
        parts.append(struct.pack(">ih", 2, row.embedding_model_id))
        if row.thumbnail is None:
            parts.append(struct.pack(">i", -1))
        else:
            parts.append(struct.pack(">i", len(row.thumbnail)) + row.thumbnail)
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


def copy_faces(cursor, rows: Iterable[FaceRow]) -> None:
    cursor.copy_expert(f"COPY faces ({FACE_COLUMNS}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(encode_face_rows(rows)))


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
                             m.camera, m.gps_lat, m.gps_lon, "indexed", None, len(o.faces), m.phash))
            elif isinstance(o, Failed):
                rows.append((f.path, f.content_hash, f.size, f.mtime_ns, None, None, None, None, None, None, None,
                             "failed", o.reason, 0, None))
            else:  # CopyOf: metadata is filled from the source below
                rows.append((f.path, f.content_hash, f.size, f.mtime_ns, None, None, None, None, None, None, None,
                             "indexed", None, 0, None))
        returned = execute_values(cursor, """
            INSERT INTO photos (path, content_hash, size, mtime_ns, width, height, format, taken_at, camera,
                                gps_lat, gps_lon, status, error, face_count, phash)
            VALUES %s
            ON CONFLICT (path) DO UPDATE SET
                content_hash = EXCLUDED.content_hash, size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns,
                width = EXCLUDED.width, height = EXCLUDED.height, format = EXCLUDED.format,
                taken_at = EXCLUDED.taken_at, camera = EXCLUDED.camera, gps_lat = EXCLUDED.gps_lat,
                gps_lon = EXCLUDED.gps_lon, status = EXCLUDED.status, error = EXCLUDED.error,
                face_count = EXCLUDED.face_count, phash = EXCLUDED.phash, indexed_at = now()
            RETURNING path, id""", rows, fetch=True)
        return {path: photo_id for path, photo_id in returned}

    @staticmethod
    def _copy_faces(cursor, photos: Sequence[tuple[int, list[Face]]], embedding_model_id: int) -> None:
        rows = [FaceRow(photo_id, face.detection.box, [v for point in face.detection.landmarks for v in point],
                        face.detection.score, face.embedding, embedding_model_id, face.thumbnail or None)
                for photo_id, faces in photos for face in faces]
        if rows:
            copy_faces(cursor, rows)

    @staticmethod
    def _clone_photo(cursor, source_id: int, target_id: int) -> None:
        cursor.execute("""
            UPDATE photos t SET width = s.width, height = s.height, format = s.format, taken_at = s.taken_at,
                   camera = s.camera, gps_lat = s.gps_lat, gps_lon = s.gps_lon, face_count = s.face_count,
                   phash = s.phash
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
            self._tune_search(conn, ef_search)
            limit = max(50, top_k * 20)
            while True:
                rows = conn.execute(text(f"""
                    SELECT fi.identity_id, i.name, fi.source, f.id AS face_id,
                           f.embedding <-> CAST(:q AS vector) AS distance
                    FROM faces f
                    JOIN face_identities fi ON fi.face_id = f.id
                    JOIN identities i ON i.id = fi.identity_id
                    ORDER BY {NEAREST_TO_QUERY}
                    LIMIT :limit"""), {"q": query, "limit": limit}).all()
                best: dict[int, Candidate] = {}
                for r in rows:  # ordered at half precision; the distances are exact
                    if r.identity_id not in best or r.distance < best[r.identity_id].distance:
                        best[r.identity_id] = Candidate(r.identity_id, r.name, float(r.distance), r.face_id, r.source)
                # One identity with many close faces can fill the whole window: widen it until
                # enough distinct identities appear or fewer rows than asked say all were seen.
                if len(best) >= top_k or len(rows) < limit:
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
        # pgvector >= 0.8 can keep scanning the index when the join filters rows out.
        iterative = ", set_config('hnsw.iterative_scan', 'relaxed_order', true)" if _pgvector_version(conn) >= (0, 8) else ""
        conn.execute(text(f"SELECT set_config('hnsw.ef_search', :ef, true){iterative}"), {"ef": str(ef_search)})

    # ---- reports ------------------------------------------------------------------------
    def photo_path(self, photo_id: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT path FROM photos WHERE id = :id"), {"id": photo_id}).scalar()

    def face_thumbnail(self, face_id: int) -> tuple[bytes, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT f.thumbnail, p.path FROM faces f JOIN photos p ON p.id = f.photo_id "
                                    "WHERE f.id = :id AND f.thumbnail IS NOT NULL"), {"id": face_id}).first()
        return None if row is None else (bytes(row.thumbnail), row.path)

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

    def failure_reasons(self, photo_ids: Sequence[int]) -> dict[int, str]:
        """The recorded reason of each of these photos that failed."""
        with self.engine.connect() as conn:
            return dict(conn.execute(text("SELECT id, error FROM photos WHERE id = ANY(:ids) AND status = 'failed'"),
                                     {"ids": list(photo_ids)}).all())

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


def decode_vector_send(raw: bytes | memoryview) -> np.ndarray:
    """pgvector's binary form (vector_send): int16 dimension, int16 unused, big-endian float4s."""
    return np.frombuffer(raw, dtype=">f4", offset=4).astype(np.float32)


@dataclass
class ClusterInputs:
    face_ids: np.ndarray
    photo_ids: np.ndarray
    vectors: np.ndarray
    identity_ids: np.ndarray  # -1 where the face has no identity
    sources: list[str | None]
    rejections: list[tuple[int, int]]  # (face id, identity id)
    names: dict[int, str | None]  # identity id -> name


@dataclass(frozen=True)
class PersonFace:
    face_id: int
    photo_id: int
    path: str
    box: tuple[float, float, float, float]
    source: str
    vector: np.ndarray


class PeopleStore:
    """Queries for people: clustering input and output, naming, merging, forgetting."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def cluster_inputs(self) -> ClusterInputs:
        with self.engine.connect() as conn:
            rows = conn.execute(text("""
                SELECT f.id, f.photo_id, vector_send(f.embedding) AS raw, fi.identity_id, fi.source
                FROM faces f LEFT JOIN face_identities fi ON fi.face_id = f.id
                ORDER BY f.id""")).all()
            rejections = [tuple(r) for r in conn.execute(text("SELECT face_id, identity_id FROM face_rejections"))]
            names = dict(conn.execute(text("SELECT id, name FROM identities")).all())
        vectors = np.stack([decode_vector_send(r.raw) for r in rows]) if rows else np.zeros((0, 512), np.float32)
        return ClusterInputs(
            face_ids=np.array([r.id for r in rows], np.int64),
            photo_ids=np.array([r.photo_id for r in rows], np.int64),
            vectors=vectors,
            identity_ids=np.array([r.identity_id if r.identity_id is not None else -1 for r in rows], np.int64),
            sources=[r.source for r in rows],
            rejections=rejections,  # type: ignore[arg-type]
            names=names,
        )

    def apply_assignments(self, release: Sequence[int], assign: Sequence[tuple[int, int | str, str]],
                          new_people: Sequence[str]) -> dict[str, int]:
        """In one transaction: drop system assignments of `release` faces, create one unnamed
        identity per key in `new_people`, then assign (face, identity id or new key, source).
        Unnamed identities left without faces are removed. Returns new key -> identity id."""
        created: dict[str, int] = {}
        with self.engine.begin() as conn:
            if release:
                conn.execute(text("DELETE FROM face_identities WHERE face_id = ANY(:ids) "
                                  "AND source IN ('proposed', 'clustered')"), {"ids": list(release)})
            for key in new_people:
                created[key] = conn.execute(text("INSERT INTO identities (name) VALUES (NULL) RETURNING id")).scalar_one()
            if assign:
                faces = [f for f, _, _ in assign]
                people = [created[p] if isinstance(p, str) else p for _, p, _ in assign]
                sources = [s for _, _, s in assign]
                # never overwrite what a person decided (enrolled / confirmed)
                conn.execute(text("""
                    INSERT INTO face_identities (face_id, identity_id, source)
                    SELECT * FROM unnest(CAST(:faces AS bigint[]), CAST(:people AS bigint[]), CAST(:sources AS text[]))
                    ON CONFLICT (face_id) DO UPDATE SET identity_id = EXCLUDED.identity_id, source = EXCLUDED.source,
                        assigned_at = now()
                    WHERE face_identities.source IN ('proposed', 'clustered')"""),
                    {"faces": faces, "people": people, "sources": sources})
            self._drop_empty_unnamed(conn)
        return created

    def resolve(self, person: str | int) -> tuple[int, str | None]:
        """A person by id (a number, or '#12') or by exact name."""
        from ..errors import NotFound

        key = str(person).strip()
        with self.engine.connect() as conn:
            row = None
            if key.lstrip("#").isdigit():
                row = conn.execute(text("SELECT id, name FROM identities WHERE id = :id"),
                                   {"id": int(key.lstrip("#"))}).first()
            if row is None:
                row = conn.execute(text("SELECT id, name FROM identities WHERE name = :name"), {"name": key}).first()
        if row is None:
            raise NotFound(f"no person {key!r} (give an id from `facedb people` or an exact name)")
        return row.id, row.name

    def people(self) -> list[dict]:
        """Every person with face counts by how they were assigned, and a representative face:
        the one nearest the person's centre (pgvector's avg of the embeddings)."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("""
                WITH members AS (
                    SELECT fi.identity_id, fi.source, f.id AS face_id, f.photo_id, f.embedding
                    FROM face_identities fi JOIN faces f ON f.id = fi.face_id),
                centres AS (SELECT identity_id, avg(embedding) AS centre FROM members GROUP BY identity_id)
                SELECT i.id, i.name,
                       count(m.face_id) AS faces,
                       count(*) FILTER (WHERE m.source IN ('enrolled', 'confirmed')) AS confirmed,
                       count(*) FILTER (WHERE m.source = 'proposed') AS proposed,
                       count(*) FILTER (WHERE m.source = 'clustered') AS clustered,
                       count(DISTINCT m.photo_id) AS photos,
                       (SELECT m2.face_id FROM members m2 WHERE m2.identity_id = i.id
                        ORDER BY m2.embedding <-> c.centre, m2.face_id LIMIT 1) AS representative_face_id
                FROM identities i
                LEFT JOIN members m ON m.identity_id = i.id
                LEFT JOIN centres c ON c.identity_id = i.id
                GROUP BY i.id, c.centre ORDER BY count(m.face_id) DESC, i.id""")).all()
            paths = dict(conn.execute(text(
                "SELECT f.id, p.path FROM faces f JOIN photos p ON p.id = f.photo_id WHERE f.id = ANY(:ids)"),
                {"ids": [r.representative_face_id for r in rows if r.representative_face_id]}).all())
        return [dict(r._mapping) | {"representative_photo": paths.get(r.representative_face_id)} for r in rows]

    def person_faces(self, identity_id: int) -> list[PersonFace]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("""
                SELECT f.id, f.photo_id, p.path, f.box_x, f.box_y, f.box_w, f.box_h, fi.source,
                       vector_send(f.embedding) AS raw
                FROM face_identities fi JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id
                WHERE fi.identity_id = :id ORDER BY f.id"""), {"id": identity_id}).all()
        return [PersonFace(r.id, r.photo_id, r.path, (r.box_x, r.box_y, r.box_w, r.box_h), r.source,
                           decode_vector_send(r.raw)) for r in rows]

    def face_exists(self, face_id: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM faces WHERE id = :id"), {"id": face_id}).first() is not None

    def rename(self, identity_id: int, name: str) -> None:
        """Naming is a person's decision: the faces clustered into it count as confirmed."""
        from ..errors import FaceDBError

        with self.engine.begin() as conn:
            taken = conn.execute(text("SELECT id FROM identities WHERE name = :name AND id <> :id"),
                                 {"name": name, "id": identity_id}).scalar()
            if taken is not None:
                raise FaceDBError(f"the name {name!r} belongs to person #{taken} already; "
                                  f"use `facedb merge {taken} {identity_id}` to make them one")
            conn.execute(text("UPDATE identities SET name = :name WHERE id = :id"), {"name": name, "id": identity_id})
            conn.execute(text("UPDATE face_identities SET source = 'confirmed', assigned_at = now() "
                              "WHERE identity_id = :id AND source = 'clustered'"), {"id": identity_id})

    def merge(self, keep: int, other: int) -> int:
        """other's faces go to keep (as they were assigned); other's rejections too; other goes."""
        with self.engine.begin() as conn:
            moved = conn.execute(text("UPDATE face_identities SET identity_id = :keep WHERE identity_id = :other"),
                                 {"keep": keep, "other": other}).rowcount
            conn.execute(text("""
                INSERT INTO face_rejections (face_id, identity_id)
                SELECT face_id, :keep FROM face_rejections WHERE identity_id = :other ON CONFLICT DO NOTHING"""),
                {"keep": keep, "other": other})
            # a face rejected from either cannot stay in the merged person
            conn.execute(text("""
                DELETE FROM face_identities fi USING face_rejections r
                WHERE fi.face_id = r.face_id AND r.identity_id = :keep AND fi.identity_id = :keep
                AND fi.source IN ('proposed', 'clustered')"""), {"keep": keep})
            conn.execute(text("DELETE FROM identities WHERE id = :other"), {"other": other})
        return moved

    def move(self, face_id: int, identity_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM face_rejections WHERE face_id = :f AND identity_id = :i"),
                         {"f": face_id, "i": identity_id})
            conn.execute(text("""
                INSERT INTO face_identities (face_id, identity_id, source) VALUES (:f, :i, 'confirmed')
                ON CONFLICT (face_id) DO UPDATE SET identity_id = :i, source = 'confirmed', assigned_at = now()"""),
                {"f": face_id, "i": identity_id})
            self._drop_empty_unnamed(conn)

    def reject(self, face_id: int, identity_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("INSERT INTO face_rejections (face_id, identity_id) VALUES (:f, :i) "
                              "ON CONFLICT DO NOTHING"), {"f": face_id, "i": identity_id})
            conn.execute(text("DELETE FROM face_identities WHERE face_id = :f AND identity_id = :i"),
                         {"f": face_id, "i": identity_id})
            self._drop_empty_unnamed(conn)

    def confirm(self, identity_id: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(text("UPDATE face_identities SET source = 'confirmed', assigned_at = now() "
                                     "WHERE identity_id = :id AND source IN ('proposed', 'clustered')"),
                                {"id": identity_id}).rowcount

    def split_off(self, identity_id: int, face_ids: Sequence[int]) -> int:
        """Move these faces of a person into a new unnamed person (keeping how they were assigned)."""
        with self.engine.begin() as conn:
            new = conn.execute(text("INSERT INTO identities (name) VALUES (NULL) RETURNING id")).scalar_one()
            conn.execute(text("UPDATE face_identities SET identity_id = :new WHERE identity_id = :old "
                              "AND face_id = ANY(:faces)"), {"new": new, "old": identity_id, "faces": list(face_ids)})
        return new

    def forget(self, identity_id: int, with_photos: bool) -> dict[str, int]:
        """Remove the person, every face (embedding, thumbnail) and assignment derived from them,
        and with_photos also the photos they appear in. Returns what was removed."""
        with self.engine.begin() as conn:
            photo_ids = [r[0] for r in conn.execute(text(
                "SELECT DISTINCT f.photo_id FROM faces f JOIN face_identities fi ON fi.face_id = f.id "
                "WHERE fi.identity_id = :id"), {"id": identity_id})]
            faces = conn.execute(text(
                "DELETE FROM faces f USING face_identities fi WHERE fi.face_id = f.id AND fi.identity_id = :id"),
                {"id": identity_id}).rowcount
            conn.execute(text("DELETE FROM identities WHERE id = :id"), {"id": identity_id})
            photos = 0
            if with_photos:
                photos = conn.execute(text("DELETE FROM photos WHERE id = ANY(:ids)"), {"ids": photo_ids}).rowcount
            else:
                conn.execute(text("UPDATE photos p SET face_count = (SELECT count(*) FROM faces f WHERE f.photo_id = p.id) "
                                  "WHERE p.id = ANY(:ids)"), {"ids": photo_ids})
            self._drop_empty_unnamed(conn)
        return {"faces": faces, "photos": photos}

    @staticmethod
    def _drop_empty_unnamed(conn: Connection) -> None:
        conn.execute(text("""
            DELETE FROM identities i WHERE i.name IS NULL
            AND NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.identity_id = i.id)"""))


@dataclass
class DedupPhoto:
    id: int
    path: str
    content_hash: str | None
    size: int | None
    mtime_ns: int | None
    width: int
    height: int
    format: str | None
    taken_at: datetime | None
    camera: str | None
    has_gps: bool
    phash: int | None
    face_count: int


@dataclass
class DedupFace:
    id: int
    photo_id: int
    box: tuple[float, float, float, float]
    vector: np.ndarray


class DedupStore:
    """Candidate pairs for the dedup report, found with indexes rather than all pairs."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    @staticmethod
    def _scope(alias: str, prefixes: Sequence[str]) -> str:
        if not prefixes:
            return ""
        return (f" AND ({alias}.path = ANY(:prefixes) OR EXISTS (SELECT 1 FROM unnest(CAST(:dirs AS text[])) AS d "
                f"WHERE starts_with({alias}.path, d)))")

    @staticmethod
    def _params(prefixes: Sequence[str]) -> dict:
        return {"prefixes": list(prefixes), "dirs": [p.rstrip("/") + "/" for p in prefixes]}

    def missing_phash(self, prefixes: Sequence[str]) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT id, path FROM photos p WHERE status = 'indexed' AND phash IS NULL" + self._scope("p", prefixes)
                + " ORDER BY id"), self._params(prefixes))]

    def set_phash(self, values: Sequence[tuple[int, int]]) -> None:
        if values:
            with self.engine.begin() as conn:
                conn.execute(text("UPDATE photos SET phash = :h WHERE id = :id"),
                             [{"id": i, "h": h} for i, h in values])

    def photos(self, prefixes: Sequence[str]) -> dict[int, DedupPhoto]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, path, content_hash, size, mtime_ns, width, height, format, taken_at, camera, "
                "gps_lat IS NOT NULL AS has_gps, phash, face_count FROM photos p WHERE status = 'indexed'"
                + self._scope("p", prefixes)), self._params(prefixes)).all()
        return {r.id: DedupPhoto(*r) for r in rows}

    def identical(self, prefixes: Sequence[str]) -> list[list[int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT array_agg(id ORDER BY id) FROM photos p WHERE status = 'indexed' AND content_hash IS NOT NULL"
                + self._scope("p", prefixes) + " GROUP BY content_hash HAVING count(*) > 1 ORDER BY min(id)"),
                self._params(prefixes)).all()
        return [list(r[0]) for r in rows]

    def phash_pairs(self, prefixes: Sequence[str], max_bits: int) -> list[tuple[int, int, int]]:
        """Photo pairs whose hashes share a 16-bit part and differ in at most max_bits bits."""
        parts = " UNION ".join(
            f"SELECT a.id AS a, b.id AS b, bit_count(CAST(a.phash # b.phash AS bit(64))) AS bits "
            f"FROM photos a JOIN photos b ON ((a.phash >> {16 * i}) & 65535) = ((b.phash >> {16 * i}) & 65535) "
            f"AND a.id < b.id WHERE a.status = 'indexed' AND b.status = 'indexed' "
            f"AND a.phash IS NOT NULL AND b.phash IS NOT NULL" + self._scope("a", prefixes) + self._scope("b", prefixes)
            for i in range(4))
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT a, b, bits FROM ({parts}) pairs WHERE bits <= :max_bits"),
                                self._params(prefixes) | {"max_bits": max_bits}).all()
        return [tuple(r) for r in rows]

    def burst_pairs(self, prefixes: Sequence[str], seconds: float) -> list[tuple[int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT a.id, b.id FROM photos a JOIN photos b ON b.taken_at BETWEEN a.taken_at - make_interval("
                "secs => :s) AND a.taken_at + make_interval(secs => :s) AND a.id < b.id "
                "WHERE a.status = 'indexed' AND b.status = 'indexed' AND a.taken_at IS NOT NULL"
                + self._scope("a", prefixes) + self._scope("b", prefixes)), self._params(prefixes) | {"s": seconds}).all()
        return [tuple(r) for r in rows]

    def face_pairs(self, prefixes: Sequence[str], radius: float, k: int = 10) -> list[tuple[int, int, float]]:
        """Faces in different photos within `radius` of each other: each face's k nearest, via
        the HNSW index (one index probe per face, not all pairs)."""
        with self.engine.begin() as conn:
            Store._tune_search(conn, max(40, k * 4))
            rows = conn.execute(text(f"""
                SELECT f.id, n.id, n.d FROM faces f JOIN photos p ON p.id = f.photo_id
                CROSS JOIN LATERAL (
                    SELECT g.id, g.embedding <-> f.embedding AS d FROM faces g JOIN photos q ON q.id = g.photo_id
                    WHERE g.photo_id <> f.photo_id {self._scope("q", prefixes)}
                    ORDER BY {nearest_to("g.embedding", "f.embedding")} LIMIT :k) n
                WHERE n.d <= :radius {self._scope("p", prefixes)}"""),
                self._params(prefixes) | {"k": k, "radius": radius}).all()
        pairs = {}
        for a, b, d in rows:
            pairs[(min(a, b), max(a, b))] = float(d)
        return [(a, b, d) for (a, b), d in sorted(pairs.items())]

    def faces(self, photo_ids: Sequence[int] = (), face_ids: Sequence[int] = ()) -> list[DedupFace]:
        if not photo_ids and not face_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, photo_id, box_x, box_y, box_w, box_h, vector_send(embedding) AS raw FROM faces "
                "WHERE photo_id = ANY(:photos) OR id = ANY(:faces) ORDER BY id"),
                {"photos": list(photo_ids), "faces": list(face_ids)}).all()
        return [DedupFace(r.id, r.photo_id, (r.box_x, r.box_y, r.box_w, r.box_h), decode_vector_send(r.raw))
                for r in rows]

    def thumbnails(self, face_ids: Sequence[int]) -> dict[int, bytes]:
        with self.engine.connect() as conn:
            return {r.id: bytes(r.thumbnail) for r in conn.execute(text(
                "SELECT id, thumbnail FROM faces WHERE id = ANY(:ids) AND thumbnail IS NOT NULL"), {"ids": list(face_ids)})}

    def identity_pairs(self, threshold: float, k: int = 3) -> list[dict]:
        """Pairs of people with faces closer than the identity threshold, with the evidence."""
        with self.engine.begin() as conn:
            Store._tune_search(conn, 40)
            rows = conn.execute(text(f"""
                SELECT fi.identity_id AS a, n.identity_id AS b, f.id AS face_a, n.face_id AS face_b, n.d
                FROM face_identities fi JOIN faces f ON f.id = fi.face_id
                CROSS JOIN LATERAL (
                    SELECT fi2.identity_id, g.id AS face_id, g.embedding <-> f.embedding AS d
                    FROM faces g JOIN face_identities fi2 ON fi2.face_id = g.id
                    WHERE fi2.identity_id <> fi.identity_id
                    ORDER BY {nearest_to("g.embedding", "f.embedding")} LIMIT :k) n
                WHERE n.d <= :threshold"""), {"threshold": threshold, "k": k}).all()
            people = {r.id: (r.name, r.faces) for r in conn.execute(text(
                "SELECT i.id, i.name, count(fi.face_id) AS faces FROM identities i "
                "LEFT JOIN face_identities fi ON fi.identity_id = i.id GROUP BY i.id"))}
        found: dict[tuple[int, int], dict] = {}
        for r in rows:
            a, b = min(r.a, r.b), max(r.a, r.b)
            faces = (r.face_a, r.face_b) if r.a == a else (r.face_b, r.face_a)
            entry = found.setdefault((a, b), {"pairs": set(), "closest": None})
            entry["pairs"].add(faces)
            if entry["closest"] is None or r.d < entry["closest"][0]:
                entry["closest"] = (float(r.d), faces)
        return [{"people": [{"id": p, "name": people[p][0], "faces": people[p][1]} for p in (a, b)],
                 "closest_distance": round(e["closest"][0], 4), "closest_faces": list(e["closest"][1]),
                 "face_pairs_within_threshold": len(e["pairs"])}
                for (a, b), e in sorted(found.items(), key=lambda item: item[1]["closest"][0])]


class IntegrityStore:
    """`facedb check`: what is wrong with the store, and the repairs that are safe."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def problems(self, expected_dimension: int = 512) -> dict[str, list]:
        with self.engine.connect() as conn:
            found = {
                "faces_without_photo": [r[0] for r in conn.execute(text(
                    "SELECT f.id FROM faces f LEFT JOIN photos p ON p.id = f.photo_id WHERE p.id IS NULL"))],
                "wrong_dimension": [r[0] for r in conn.execute(text(
                    "SELECT id FROM faces WHERE vector_dims(embedding) <> :d"), {"d": expected_dimension})],
                # FaceNet embeddings are unit length; anything else was not made by it (or is damaged)
                "not_unit_length": [r[0] for r in conn.execute(text(
                    "SELECT id FROM faces WHERE abs(vector_norm(embedding) - 1) > 0.01"))],
                "wrong_face_count": [tuple(r) for r in conn.execute(text("""
                    SELECT p.id, p.face_count, count(f.id) FROM photos p LEFT JOIN faces f ON f.photo_id = p.id
                    GROUP BY p.id HAVING p.face_count <> count(f.id) ORDER BY p.id"""))],
                "faces_of_failed_photos": [r[0] for r in conn.execute(text(
                    "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.status = 'failed'"))],
                "empty_unnamed_people": [r[0] for r in conn.execute(text("""
                    SELECT i.id FROM identities i WHERE i.name IS NULL
                    AND NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.identity_id = i.id)"""))],
                "invalid_indexes": [r[0] for r in conn.execute(text("""
                    SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                    JOIN pg_class t ON t.oid = x.indrelid
                    WHERE t.relname IN ('photos', 'faces', 'identities', 'face_identities', 'face_rejections')
                    AND NOT (x.indisvalid AND x.indisready)"""))],
            }
            definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                                      {"name": EMBEDDING_INDEX}).scalar()
            found["missing_embedding_index"] = [] if definition is not None else [EMBEDDING_INDEX]
            # an index of the same name on another expression leaves every search a sequential scan
            found["wrong_embedding_index"] = [definition] if definition is not None and not all(
                part in definition for part in EMBEDDING_INDEX_PARTS) else []
            paths = conn.execute(text("SELECT id, path FROM photos WHERE status = 'indexed' ORDER BY id")).all()
        found["missing_files"] = [(r.id, r.path) for r in paths if not os.path.lexists(r.path)]
        return found

    def repair(self, problems: dict[str, list]) -> dict[str, int]:
        """Only what cannot lose anything: recount faces, drop faces of failed photos and empty
        unnamed people, rebuild invalid or missing indexes. Missing files are only reported."""
        done = {}
        with self.engine.begin() as conn:
            if problems["faces_of_failed_photos"]:
                done["faces_of_failed_photos"] = conn.execute(text("DELETE FROM faces WHERE id = ANY(:ids)"),
                                                              {"ids": problems["faces_of_failed_photos"]}).rowcount
            if problems["wrong_face_count"] or problems["faces_of_failed_photos"]:
                done["wrong_face_count"] = conn.execute(text("""
                    UPDATE photos p SET face_count = c.n FROM (
                        SELECT p2.id, count(f.id) AS n FROM photos p2 LEFT JOIN faces f ON f.photo_id = p2.id
                        GROUP BY p2.id) c
                    WHERE c.id = p.id AND p.face_count <> c.n""")).rowcount
            if problems["empty_unnamed_people"]:
                done["empty_unnamed_people"] = conn.execute(text("DELETE FROM identities WHERE id = ANY(:ids)"),
                                                            {"ids": problems["empty_unnamed_people"]}).rowcount
            for kind in ("missing_embedding_index", "wrong_embedding_index"):
                if problems.get(kind):
                    conn.execute(text(f"DROP INDEX IF EXISTS {EMBEDDING_INDEX}"))
                    conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
                    conn.execute(text(EMBEDDING_INDEX_DDL))
                    done[kind] = 1
        for name in problems["invalid_indexes"]:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'REINDEX INDEX "{name}"'))  # a name read from pg_class, not from a user
            done["invalid_indexes"] = done.get("invalid_indexes", 0) + 1
        return done


@dataclass
class FaceSample:
    """Faces for calibration: ids, their identity (-1: none), their photo's bytes, vectors."""

    face_ids: np.ndarray
    identity_ids: np.ndarray
    content_hashes: list[str | None]
    vectors: np.ndarray


class CalibrationStore:
    """`facedb calibrate`: the faces it measures, and the thresholds it stores."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def _sample(self, where: str, params: dict, limit: int) -> FaceSample:
        # md5 of the id with a seed: a repeatable sample, the same on every run over the same faces
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"""
                SELECT f.id, coalesce(fi.identity_id, -1) AS identity_id, p.content_hash,
                       vector_send(f.embedding) AS raw
                FROM faces f JOIN photos p ON p.id = f.photo_id
                LEFT JOIN face_identities fi ON fi.face_id = f.id
                LEFT JOIN identities i ON i.id = fi.identity_id
                WHERE f.embedding_model_id = :model AND {where}
                ORDER BY md5(f.id::text || :seed) LIMIT :limit"""), params | {"limit": limit}).all()
        return _face_sample(rows)

    def placed_faces(self, model_id: int, limit: int, seed: str) -> FaceSample:
        """Faces a person put in a named identity (enrolled, confirmed): the genuine side."""
        return self._sample("fi.source IN ('enrolled', 'confirmed') AND i.name IS NOT NULL",
                            {"model": model_id, "seed": seed}, limit)

    def faces_of_nobody(self, model_id: int, limit: int, seed: str) -> FaceSample:
        """Faces of no named identity (unassigned, or clustered into an unnamed person), but none
        from a photo whose bytes are a photo of a placed face (a copy of an enrolled photo is no
        stranger)."""
        return self._sample("""(fi.face_id IS NULL OR i.name IS NULL) AND NOT EXISTS (
                SELECT 1 FROM photos q JOIN faces g ON g.photo_id = q.id
                JOIN face_identities gi ON gi.face_id = g.id AND gi.source IN ('enrolled', 'confirmed')
                WHERE q.content_hash = p.content_hash)""", {"model": model_id, "seed": seed}, limit)

    def rejected_faces(self, model_id: int, limit: int, seed: str) -> FaceSample:
        """Faces a person said are not someone (`facedb reject`), each with the identity it is
        not: impostors against that person's placed faces, known to be right."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("""
                SELECT f.id, r.identity_id, p.content_hash, vector_send(f.embedding) AS raw
                FROM face_rejections r JOIN faces f ON f.id = r.face_id JOIN photos p ON p.id = f.photo_id
                WHERE f.embedding_model_id = :model
                ORDER BY md5(f.id::text || r.identity_id::text || :seed) LIMIT :limit"""),
                {"model": model_id, "seed": seed, "limit": limit}).all()
        return _face_sample(rows)

    def save(self, model_id: int, threshold: float, far_target: float, evidence: dict) -> int:
        import json

        with self.engine.begin() as conn:
            return conn.execute(text(
                "INSERT INTO calibrations (embedding_model_id, threshold, far_target, evidence) "
                "VALUES (:model, :threshold, :far, CAST(:evidence AS jsonb)) RETURNING id"),
                {"model": model_id, "threshold": threshold, "far": far_target,
                 "evidence": json.dumps(evidence)}).scalar_one()

    def latest(self, name: str, version: str, sha256: str, preprocessing: str) -> dict | None:
        """The calibration in force for the model (looked up without creating the model's row)."""
        with self.engine.connect() as conn:
            row = conn.execute(text("""
                SELECT c.id, c.threshold, c.far_target, c.evidence, c.created_at
                FROM calibrations c JOIN embedding_models m ON m.id = c.embedding_model_id
                WHERE m.name = :name AND m.version = :version AND m.sha256 = :sha256 AND m.preprocessing = :pre
                ORDER BY c.created_at DESC, c.id DESC LIMIT 1"""),
                {"name": name, "version": version, "sha256": sha256, "pre": preprocessing}).first()
        if row is None:
            return None
        return {"id": row.id, "threshold": row.threshold, "far_target": row.far_target, "evidence": row.evidence,
                "created_at": row.created_at.isoformat(timespec="seconds")}


def _face_sample(rows) -> FaceSample:
    return FaceSample(np.array([r.id for r in rows], np.int64), np.array([r.identity_id for r in rows], np.int64),
                      [r.content_hash for r in rows],
                      np.stack([decode_vector_send(r.raw) for r in rows]) if rows
                      else np.zeros((0, EMBEDDING_DIMENSION), np.float32))
