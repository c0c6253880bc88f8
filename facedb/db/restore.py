"""`facedb import`: an export (backup.py has the format) added to this database, every record
checked before it is written; any fault fails the whole import, and nothing of it is kept."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from ..errors import FaceDBError, one_line
from ..names import person_name
from ..records import HUMAN_SOURCES, PHOTO_STATUSES, SYSTEM_SOURCES
from .backup import FORMAT, READABLE_VERSIONS
from .codec import vector_literal
from .store import Store

MAX_LINE_CHARS = 16 * 2**20  # a face line is about 8 KB; a longer line is not an export's
MAX_THUMBNAIL_BYTES = 2**20
HALF_PRECISION_MAX = 65504.0  # the search index holds half precision


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not hold NUL characters")
    return value


Text = Annotated[str, AfterValidator(_text)]
BigInt = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Int = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ModelRecord(_Record):
    id: BigInt
    name: Text
    version: Text
    sha256: Text
    preprocessing: Text
    dimension: Annotated[int, Field(ge=1, le=16000)]
    runtime: Text = "tensorflow"  # absent in files from before it was recorded: all TensorFlow's


class PhotoRecord(_Record):
    id: BigInt
    path: Annotated[Text, Field(min_length=1)]
    content_hash: Text | None = None
    size: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    mtime_ns: BigInt | None = None
    width: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    height: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    format: Text | None = None
    taken_at: datetime | None = None
    camera: Text | None = None
    gps_lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    gps_lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    status: Literal[PHOTO_STATUSES]  # type: ignore[valid-type]
    error: Text | None = None
    face_count: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    phash: BigInt | None = None


class IdentityRecord(_Record):
    id: BigInt
    name: Text | None = None
    hidden: bool = False


class FaceRecord(_Record):
    id: BigInt
    photo: BigInt
    box: Annotated[list[Annotated[float, Field(ge=-1e9, le=1e9)]], Field(min_length=4, max_length=4)]
    landmarks: Annotated[list[Annotated[float, Field(ge=-1e9, le=1e9)]], Field(min_length=10, max_length=10)]
    score: Annotated[float, Field(ge=0, le=1)]
    model: BigInt | None = None  # versions 1-3
    embedding: str | None = None
    thumbnail: str | None = None


class EmbeddingRecord(_Record):
    face: BigInt
    model: BigInt
    embedding: str


class AssignmentRecord(_Record):
    face: BigInt
    identity: BigInt
    source: Literal[HUMAN_SOURCES + SYSTEM_SOURCES]  # type: ignore[valid-type]


class RejectionRecord(_Record):
    face: BigInt
    identity: BigInt


class CalibrationRecord(_Record):
    model: BigInt
    threshold: Annotated[float, Field(gt=0, le=2)]
    far_target: Annotated[float, Field(gt=0, lt=1)]
    evidence: dict[str, Any]
    created_at: datetime


RECORDS: dict[str, type[_Record]] = {
    "embedding_model": ModelRecord,
    "photo": PhotoRecord,
    "identity": IdentityRecord,
    "face": FaceRecord,
    "embedding": EmbeddingRecord,
    "assignment": AssignmentRecord,
    "rejection": RejectionRecord,
    "calibration": CalibrationRecord,
}


class _Refused(Exception):
    """A record that is not what an export writes; the message says why."""


def import_(store: Store, path: Path) -> dict:
    """Everything in one transaction: an import is all there or not at all. Every record is
    checked before it is written, and every one is accounted for: added, or skipped because
    its photo is already here (with its own faces). A record that refers to something the
    file does not hold, a value out of range, a line that is not JSON, a truncated file or a
    header whose counts the file does not match fails the whole import, naming the line."""
    added = {
        "photo": 0,
        "skipped_photo": 0,
        "face": 0,
        "skipped_face": 0,
        "embedding": 0,
        "identity": 0,
        "assignment": 0,
        "rejection": 0,
        "skipped_decision": 0,
        "calibration": 0,
        "skipped_calibration": 0,
    }
    try:
        source = gzip.open(path, "rt", encoding="utf-8")
        header = json.loads(source.readline(MAX_LINE_CHARS))
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise FaceDBError(f"{path}: not a facedb export ({one_line(exc)})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise FaceDBError(f"{path}: not a facedb export")
    if header.get("version") not in READABLE_VERSIONS:
        raise FaceDBError(
            f"{path}: export version {header.get('version')}; this facedb reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    number = 1
    seen = dict.fromkeys(RECORDS, 0)
    try:
        with source, store.engine.begin() as conn:
            importer = _Importer(conn)
            while line := source.readline(MAX_LINE_CHARS + 1):
                number += 1
                if len(line) > MAX_LINE_CHARS:
                    raise _Refused(f"longer than {MAX_LINE_CHARS:,} characters")
                kind, record = _parse(line)
                seen[kind] += 1
                for counter in importer.add(kind, record):
                    added[counter] += 1
            _check_counts(header, seen)
    except _Refused as exc:
        where = f"line {number}: " if number > 1 else ""
        raise FaceDBError(f"{path}: {where}{exc}; nothing was imported") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FaceDBError(
            f"{path}: the file is truncated or corrupt after line {number} ({one_line(exc)}); nothing was imported"
        ) from None
    except UnicodeDecodeError:
        raise FaceDBError(f"{path}: line {number + 1} is not UTF-8 text; nothing was imported") from None
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        raise FaceDBError(
            f"{path}: line {number}: the database refused it ({one_line(exc.orig)}); nothing was imported"
        ) from None
    return added


def _parse(line: str) -> tuple[str, _Record]:
    try:
        raw = json.loads(line)
    except ValueError:
        raise _Refused("not JSON") from None
    if not isinstance(raw, dict) or raw.get("type") not in RECORDS:
        kind = raw.get("type") if isinstance(raw, dict) else None
        raise _Refused(f"unknown record type {kind!r}" if kind is not None else "not a record")
    kind = raw["type"]
    try:
        return kind, RECORDS[kind].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise _Refused(f"{kind} {field}: {first['msg']}") from None


def _check_counts(header: dict, seen: dict[str, int]) -> None:
    said = header.get("counts")
    if not isinstance(said, dict):
        return
    wrong = [
        f"{said.get(kind)} {kind} records but the file holds {n}"
        for kind, n in seen.items()
        if kind in said and said[kind] != n
    ]
    if wrong:
        raise _Refused("the header says " + "; ".join(wrong) + " (the file is incomplete or was edited)")


class _Importer:
    """The exporting database's ids, mapped to the new ones as the records come."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.models: dict[int, tuple[int, int]] = {}  # -> (new id, dimension)
        self.photos: dict[int, int | None] = {}  # None: skipped, the path is already here
        self.identities: dict[int, int] = {}
        self.faces: dict[int, int | None] = {}  # None: skipped with its photo

    def add(self, kind: str, record: _Record) -> list[str]:
        return getattr(self, kind)(record)

    def embedding_model(self, r: ModelRecord) -> list[str]:
        values = r.model_dump()
        self.conn.execute(
            text(
                "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension, runtime) "
                "VALUES (:name, :version, :sha256, :preprocessing, :dimension, :runtime) ON CONFLICT DO NOTHING"
            ),
            values,
        )
        found = self.conn.execute(
            text(
                "SELECT id, dimension FROM embedding_models WHERE name = :name AND version = :version "
                "AND sha256 = :sha256 AND preprocessing = :preprocessing AND runtime = :runtime"
            ),
            values,
        ).one()
        if found.dimension != r.dimension:
            raise _Refused(
                f"embedding model {r.name} {r.version}: dimension {r.dimension}, but this database "
                f"has it with {found.dimension}"
            )
        self.models[r.id] = (found.id, found.dimension)
        return []

    def photo(self, r: PhotoRecord) -> list[str]:
        if r.id in self.photos:
            raise _Refused(f"photo {r.id} appears twice")
        new = self.conn.execute(
            text("""
            INSERT INTO photos (path, content_hash, size, mtime_ns, width, height, format, taken_at, camera,
                                gps_lat, gps_lon, status, error, face_count, phash)
            VALUES (:path, :content_hash, :size, :mtime_ns, :width, :height, :format, :taken_at, :camera,
                    :gps_lat, :gps_lon, :status, :error, :face_count, :phash)
            ON CONFLICT (path) DO NOTHING RETURNING id"""),
            r.model_dump(),
        ).scalar()
        self.photos[r.id] = new
        return ["photo" if new else "skipped_photo"]

    def identity(self, r: IdentityRecord) -> list[str]:
        if r.id in self.identities:
            raise _Refused(f"identity {r.id} appears twice")
        if r.name is None:
            self.identities[r.id] = self.conn.execute(
                text("INSERT INTO identities (name, hidden) VALUES (NULL, :h) RETURNING id"), {"h": r.hidden}
            ).scalar_one()
            return ["identity"]
        try:
            name = person_name(r.name)
        except FaceDBError as exc:
            raise _Refused(f"identity {r.id}: {exc}") from None
        new = self.conn.execute(
            text("INSERT INTO identities (name, hidden) VALUES (:n, :h) ON CONFLICT (name) DO NOTHING RETURNING id"),
            {"n": name, "h": r.hidden},
        ).scalar()
        self.identities[r.id] = (
            new or self.conn.execute(text("SELECT id FROM identities WHERE name = :n"), {"n": name}).scalar_one()
        )
        return ["identity"] if new else []

    def face(self, r: FaceRecord) -> list[str]:
        if r.id in self.faces:
            raise _Refused(f"face {r.id} appears twice")
        if r.photo not in self.photos:
            raise _Refused(f"face {r.id} belongs to photo {r.photo}, which the file does not hold before it")
        if (r.model is None) != (r.embedding is None):
            raise _Refused(f"face {r.id}: a model without an embedding or an embedding without a model")
        embedding = self._vector(r.id, r.model, r.embedding) if r.model is not None and r.embedding else None
        thumbnail = None
        if r.thumbnail:
            thumbnail = _base64(r.thumbnail, f"face {r.id} thumbnail")
            if len(thumbnail) > MAX_THUMBNAIL_BYTES:
                raise _Refused(f"face {r.id} thumbnail: larger than {MAX_THUMBNAIL_BYTES:,} bytes")
        photo = self.photos[r.photo]
        if photo is None:
            self.faces[r.id] = None  # its photo was already here, with its own faces
            return ["skipped_face"]
        face_id = self.conn.execute(
            text("""
            INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, thumbnail)
            VALUES (:photo, :x, :y, :w, :h, :landmarks, :score, :thumb)
            RETURNING id"""),
            {
                "photo": photo,
                "x": r.box[0],
                "y": r.box[1],
                "w": r.box[2],
                "h": r.box[3],
                "landmarks": r.landmarks,
                "score": r.score,
                "thumb": thumbnail,
            },
        ).scalar_one()
        self.faces[r.id] = face_id
        if embedding is not None:
            self._insert_embedding(face_id, *embedding)
        return ["face"]

    def embedding(self, r: EmbeddingRecord) -> list[str]:
        if r.face not in self.faces:
            raise _Refused(f"embedding of face {r.face}, which the file does not hold before it")
        model_id, vector = self._vector(r.face, r.model, r.embedding)
        face_id = self.faces[r.face]
        if face_id is None:
            return []  # skipped with its face
        self._insert_embedding(face_id, model_id, vector)
        return ["embedding"]

    def _vector(self, face: int, model: int, encoded: str) -> tuple[int, np.ndarray]:
        if model not in self.models:
            raise _Refused(
                f"face {face} was embedded by embedding model {model}, which the file does not hold before it"
            )
        model_id, dimension = self.models[model]
        vector = np.frombuffer(_base64(encoded, f"face {face} embedding"), dtype="<f4")
        if vector.size != dimension or len(encoded) > 8 * dimension:
            raise _Refused(f"face {face} embedding: {vector.size} values, the model makes {dimension}")
        if not np.isfinite(vector).all() or np.abs(vector).max() > HALF_PRECISION_MAX:
            raise _Refused(f"face {face} embedding: values must be finite and within +-{HALF_PRECISION_MAX:g}")
        return model_id, vector

    def _insert_embedding(self, face_id: int, model_id: int, vector: np.ndarray) -> None:
        inserted = self.conn.execute(
            text("""
            INSERT INTO face_embeddings (face_id, model, embedding_model_id, embedding)
            SELECT :face, version, id, CAST(:embedding AS halfvec) FROM embedding_models WHERE id = :model
            ON CONFLICT DO NOTHING"""),
            {"face": face_id, "model": model_id, "embedding": vector_literal(vector)},
        ).rowcount
        if not inserted:
            raise _Refused(f"face {face_id}: two embeddings of one model")

    def _decision(self, kind: str, face_id: int, identity_id: int) -> tuple[int | None, int]:
        if face_id not in self.faces:
            raise _Refused(f"{kind} of face {face_id}, which the file does not hold before it")
        if identity_id not in self.identities:
            raise _Refused(f"{kind} to identity {identity_id}, which the file does not hold before it")
        return self.faces[face_id], self.identities[identity_id]

    def assignment(self, r: AssignmentRecord) -> list[str]:
        face, identity = self._decision("assignment", r.face, r.identity)
        if face is None:
            return ["skipped_decision"]
        done = self.conn.execute(
            text(
                "INSERT INTO face_identities (face_id, identity_id, source) VALUES (:f, :i, :s) "
                "ON CONFLICT (face_id) DO NOTHING"
            ),
            {"f": face, "i": identity, "s": r.source},
        )
        if not done.rowcount:
            raise _Refused(f"face {r.face} is assigned twice")
        return ["assignment"]

    def rejection(self, r: RejectionRecord) -> list[str]:
        face, identity = self._decision("rejection", r.face, r.identity)
        if face is None:
            return ["skipped_decision"]
        self.conn.execute(
            text("INSERT INTO face_rejections (face_id, identity_id) VALUES (:f, :i) ON CONFLICT DO NOTHING"),
            {"f": face, "i": identity},
        )
        return ["rejection"]

    def calibration(self, r: CalibrationRecord) -> list[str]:
        if r.model not in self.models:
            raise _Refused(f"calibration of embedding model {r.model}, which the file does not hold before it")
        model = self.models[r.model][0]
        new = self.conn.execute(
            text("""
            INSERT INTO calibrations (embedding_model_id, threshold, far_target, evidence, created_at)
            SELECT :model, :threshold, :far, CAST(:evidence AS jsonb), :created
            WHERE NOT EXISTS (SELECT 1 FROM calibrations WHERE embedding_model_id = :model
                              AND threshold = :threshold AND created_at = :created)
            RETURNING id"""),
            {
                "model": model,
                "threshold": r.threshold,
                "far": r.far_target,
                "evidence": json.dumps(r.evidence),
                "created": r.created_at,
            },
        ).scalar()
        return ["calibration" if new is not None else "skipped_calibration"]


def _base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(f"{what}: not base64") from None
