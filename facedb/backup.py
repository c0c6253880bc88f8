"""`facedb export` / `facedb import`: photos, faces, embeddings, people and decisions, moved
between databases in a documented, versioned format (never pickle).

The file is gzip-compressed JSON Lines. The first line is the header:
    {"format": "facedb-export", "version": 2, "exported_at": ..., "counts": {...}}
then one object per line, each with a "type":
    embedding_model  {"id", "name", "version", "sha256", "preprocessing", "dimension"}
    photo            {"id", "path", "content_hash", "size", "mtime_ns", "width", "height", "format", "taken_at",
                      "camera", "gps_lat", "gps_lon", "status", "error", "face_count", "phash"}
    identity         {"id", "name"}
    face             {"id", "photo", "box": [x, y, w, h], "landmarks": [...10], "score", "model",
                      "embedding": base64 of little-endian float32, "thumbnail": base64 JPEG or null}
    assignment       {"face", "identity", "source"}
    rejection        {"face", "identity"}
    calibration      {"model", "threshold", "far_target", "evidence", "created_at"}  (version 2 on)
Ids are the exporting database's; they only tie the lines together. Importing adds everything
with new ids; a photo whose path is already there is skipped with its faces.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import text

from .db.store import Store, decode_vector_send, vector_literal
from .errors import FaceDBError

FORMAT = "facedb-export"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # 2 added calibrations


def export(store: Store, path: Path) -> dict:
    counts = {"embedding_model": 0, "photo": 0, "identity": 0, "face": 0, "assignment": 0, "rejection": 0,
              "calibration": 0}
    with store.engine.connect() as conn:
        for kind in counts:
            table = {"embedding_model": "embedding_models", "photo": "photos", "identity": "identities",
                     "face": "faces", "assignment": "face_identities", "rejection": "face_rejections",
                     "calibration": "calibrations"}[kind]
            counts[kind] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
        header = {"type": "header", "format": FORMAT, "version": VERSION,
                  "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "counts": counts}
        with gzip.open(path, "wt", encoding="utf-8") as out:
            def write(record: dict) -> None:
                out.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")

            write(header)
            for r in conn.execute(text("SELECT * FROM embedding_models ORDER BY id")):
                write({"type": "embedding_model", **r._mapping})
            for r in conn.execute(text(
                    "SELECT id, path, content_hash, size, mtime_ns, width, height, format, taken_at, camera, "
                    "gps_lat, gps_lon, status, error, face_count, phash FROM photos ORDER BY id")):
                write({"type": "photo", **r._mapping})
            for r in conn.execute(text("SELECT id, name FROM identities ORDER BY id")):
                write({"type": "identity", **r._mapping})
            for r in conn.execute(text(
                    "SELECT id, photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding_model_id, "
                    "vector_send(embedding) AS raw, thumbnail FROM faces ORDER BY id")).yield_per(2000):
                vector = decode_vector_send(r.raw).astype("<f4")
                write({"type": "face", "id": r.id, "photo": r.photo_id, "box": [r.box_x, r.box_y, r.box_w, r.box_h],
                       "landmarks": list(r.landmarks), "score": r.score, "model": r.embedding_model_id,
                       "embedding": base64.b64encode(vector.tobytes()).decode(),
                       "thumbnail": base64.b64encode(bytes(r.thumbnail)).decode() if r.thumbnail else None})
            for r in conn.execute(text("SELECT face_id, identity_id, source FROM face_identities ORDER BY face_id")):
                write({"type": "assignment", "face": r.face_id, "identity": r.identity_id, "source": r.source})
            for r in conn.execute(text("SELECT face_id, identity_id FROM face_rejections ORDER BY face_id")):
                write({"type": "rejection", "face": r.face_id, "identity": r.identity_id})
            for r in conn.execute(text("SELECT embedding_model_id, threshold, far_target, evidence, created_at "
                                       "FROM calibrations ORDER BY created_at, id")):
                write({"type": "calibration", "model": r.embedding_model_id, "threshold": r.threshold,
                       "far_target": r.far_target, "evidence": r.evidence, "created_at": r.created_at})
    return counts


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")


def import_(store: Store, path: Path) -> dict:
    """Everything in one transaction: an import is all there or not at all."""
    added = {"photo": 0, "skipped_photo": 0, "face": 0, "identity": 0, "assignment": 0, "rejection": 0,
             "calibration": 0}
    models: dict[int, int] = {}
    photos: dict[int, int | None] = {}
    identities: dict[int, int] = {}
    faces: dict[int, int] = {}
    try:
        source = gzip.open(path, "rt", encoding="utf-8")
        header = json.loads(source.readline())
    except (OSError, ValueError, EOFError) as exc:
        raise FaceDBError(f"{path}: not a facedb export ({exc})") from None
    if header.get("format") != FORMAT:
        raise FaceDBError(f"{path}: not a facedb export")
    if header.get("version") not in READABLE_VERSIONS:
        raise FaceDBError(f"{path}: export version {header.get('version')}; this facedb reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}")
    with source, store.engine.begin() as conn:
        for number, line in enumerate(source, 2):
            try:
                record = json.loads(line)
                kind = record["type"]
            except (ValueError, KeyError, TypeError):
                raise FaceDBError(f"{path}: line {number} is not a record") from None
            if kind == "embedding_model":
                conn.execute(text("INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension) "
                                  "VALUES (:name, :version, :sha256, :preprocessing, :dimension) ON CONFLICT DO NOTHING"),
                             record)
                models[record["id"]] = conn.execute(text(
                    "SELECT id FROM embedding_models WHERE name = :name AND version = :version AND sha256 = :sha256 "
                    "AND preprocessing = :preprocessing"), record).scalar_one()
            elif kind == "photo":
                new = conn.execute(text("""
                    INSERT INTO photos (path, content_hash, size, mtime_ns, width, height, format, taken_at, camera,
                                        gps_lat, gps_lon, status, error, face_count, phash)
                    VALUES (:path, :content_hash, :size, :mtime_ns, :width, :height, :format, :taken_at, :camera,
                            :gps_lat, :gps_lon, :status, :error, :face_count, :phash)
                    ON CONFLICT (path) DO NOTHING RETURNING id"""), record).scalar()
                photos[record["id"]] = new
                added["photo" if new else "skipped_photo"] += 1
            elif kind == "identity":
                name = record["name"]
                if name is not None:
                    conn.execute(text("INSERT INTO identities (name) VALUES (:n) ON CONFLICT (name) DO NOTHING"),
                                 {"n": name})
                    identities[record["id"]] = conn.execute(text("SELECT id FROM identities WHERE name = :n"),
                                                            {"n": name}).scalar_one()
                else:
                    identities[record["id"]] = conn.execute(text(
                        "INSERT INTO identities (name) VALUES (NULL) RETURNING id")).scalar_one()
                added["identity"] += 1
            elif kind == "face":
                photo = photos.get(record["photo"])
                if photo is None:
                    continue  # its photo was already there, with its own faces
                vector = np.frombuffer(base64.b64decode(record["embedding"]), dtype="<f4")
                thumbnail = base64.b64decode(record["thumbnail"]) if record.get("thumbnail") else None
                faces[record["id"]] = conn.execute(text("""
                    INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding,
                                       embedding_model_id, thumbnail)
                    VALUES (:photo, :x, :y, :w, :h, :landmarks, :score, CAST(:embedding AS vector), :model, :thumb)
                    RETURNING id"""), {"photo": photo, "x": record["box"][0], "y": record["box"][1],
                                       "w": record["box"][2], "h": record["box"][3], "landmarks": record["landmarks"],
                                       "score": record["score"], "embedding": vector_literal(vector),
                                       "model": models[record["model"]], "thumb": thumbnail}).scalar_one()
                added["face"] += 1
            elif kind in ("assignment", "rejection"):
                face = faces.get(record["face"])
                if face is None:
                    continue
                if kind == "assignment":
                    conn.execute(text("INSERT INTO face_identities (face_id, identity_id, source) "
                                      "VALUES (:f, :i, :s) ON CONFLICT (face_id) DO NOTHING"),
                                 {"f": face, "i": identities[record["identity"]], "s": record["source"]})
                else:
                    conn.execute(text("INSERT INTO face_rejections (face_id, identity_id) VALUES (:f, :i) "
                                      "ON CONFLICT DO NOTHING"), {"f": face, "i": identities[record["identity"]]})
                added[kind] += 1
            elif kind == "calibration":  # the imported one is in force only if it is the newest
                new = conn.execute(text("""
                    INSERT INTO calibrations (embedding_model_id, threshold, far_target, evidence, created_at)
                    SELECT :model, :threshold, :far, CAST(:evidence AS jsonb), CAST(:created AS timestamptz)
                    WHERE NOT EXISTS (SELECT 1 FROM calibrations WHERE embedding_model_id = :model
                                      AND threshold = :threshold AND created_at = CAST(:created AS timestamptz))
                    RETURNING id"""),
                    {"model": models[record["model"]], "threshold": record["threshold"],
                     "far": record["far_target"], "evidence": json.dumps(record["evidence"]),
                     "created": record["created_at"]}).scalar()
                added[kind] += new is not None
            else:
                raise FaceDBError(f"{path}: line {number} has an unknown type {kind!r}")
    return added
