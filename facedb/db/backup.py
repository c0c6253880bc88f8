"""`facedb export` / `facedb import`: photos, faces, embeddings, people and decisions, moved
between databases in a documented, versioned format (never pickle).

The file is gzip-compressed JSON Lines. The first line is the header:
    {"format": "facedb-export", "version": 2, "exported_at": ..., "counts": {...}}
then one object per line, each with a "type":
    embedding_model  {"id", "name", "version", "sha256", "preprocessing", "dimension", "runtime"}
                     (runtime since 2026-12-02; absent: "tensorflow")
    photo            {"id", "path", "content_hash", "size", "mtime_ns", "width", "height", "format", "taken_at",
                      "camera", "gps_lat", "gps_lon", "status", "error", "face_count", "phash"}
    identity         {"id", "name"}
    face             {"id", "photo", "box": [x, y, w, h], "landmarks": [...10], "score",
                      "thumbnail": base64 WebP (or JPEG) or null}
                     (up to version 3 also "model" and "embedding", its one embedding)
    embedding        {"face", "model": an embedding_model's id, "embedding": base64 of little-endian
                      float32}  (version 4 on: a face has one per model it was embedded with)
    assignment       {"face", "identity", "source"}
    rejection        {"face", "identity"}
    calibration      {"model", "threshold", "far_target", "evidence", "created_at"}  (version 2 on)
Ids are the exporting database's; they only tie the lines together, and a line refers only to
lines before it. Importing adds everything with new ids; a photo whose path is already there
is skipped with its faces and their decisions. The header's counts are checked against the
records: a file that was cut short or edited is refused whole.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from .codec import decode_halfvec_send
from .store import Store

FORMAT = "facedb-export"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)  # 2 added calibrations, 3 hidden people, 4 embeddings of several models


def export(store: Store, path: Path) -> dict:
    counts = {
        "embedding_model": 0,
        "photo": 0,
        "identity": 0,
        "face": 0,
        "embedding": 0,
        "assignment": 0,
        "rejection": 0,
        "calibration": 0,
    }
    # one snapshot, so that the header's counts are what the file holds while indexing goes on
    with store.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        for kind in counts:
            table = {
                "embedding_model": "embedding_models",
                "photo": "photos",
                "identity": "identities",
                "face": "faces",
                "embedding": "face_embeddings",
                "assignment": "face_identities",
                "rejection": "face_rejections",
                "calibration": "calibrations",
            }[kind]
            counts[kind] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        header = {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "counts": counts,
        }
        with gzip.open(path, "wt", encoding="utf-8") as out:

            def write(record: dict) -> None:
                out.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")

            write(header)
            for r in conn.execute(text("SELECT * FROM embedding_models ORDER BY id")):
                write({"type": "embedding_model", **r._mapping})
            for r in conn.execute(
                text(
                    "SELECT id, path, content_hash, size, mtime_ns, width, height, format, taken_at, camera, "
                    "gps_lat, gps_lon, status, error, face_count, phash FROM photos ORDER BY id"
                )
            ):
                write({"type": "photo", **r._mapping})
            for r in conn.execute(text("SELECT id, name, hidden FROM identities ORDER BY id")):
                write({"type": "identity", **r._mapping})
            for r in conn.execute(
                text(
                    "SELECT id, photo_id, box_x, box_y, box_w, box_h, landmarks, score, thumbnail FROM faces ORDER BY id"
                )
            ).yield_per(2000):
                write(
                    {
                        "type": "face",
                        "id": r.id,
                        "photo": r.photo_id,
                        "box": [r.box_x, r.box_y, r.box_w, r.box_h],
                        "landmarks": list(r.landmarks),
                        "score": r.score,
                        "thumbnail": base64.b64encode(bytes(r.thumbnail)).decode() if r.thumbnail else None,
                    }
                )
            for r in conn.execute(
                text(
                    "SELECT face_id, embedding_model_id, halfvec_send(embedding) AS raw FROM face_embeddings "
                    "ORDER BY face_id, model"
                )
            ).yield_per(2000):
                vector = decode_halfvec_send(r.raw).astype("<f4")
                write(
                    {
                        "type": "embedding",
                        "face": r.face_id,
                        "model": r.embedding_model_id,
                        "embedding": base64.b64encode(vector.tobytes()).decode(),
                    }
                )
            for r in conn.execute(text("SELECT face_id, identity_id, source FROM face_identities ORDER BY face_id")):
                write({"type": "assignment", "face": r.face_id, "identity": r.identity_id, "source": r.source})
            for r in conn.execute(text("SELECT face_id, identity_id FROM face_rejections ORDER BY face_id")):
                write({"type": "rejection", "face": r.face_id, "identity": r.identity_id})
            for r in conn.execute(
                text(
                    "SELECT embedding_model_id, threshold, far_target, evidence, created_at "
                    "FROM calibrations ORDER BY created_at, id"
                )
            ):
                write(
                    {
                        "type": "calibration",
                        "model": r.embedding_model_id,
                        "threshold": r.threshold,
                        "far_target": r.far_target,
                        "evidence": r.evidence,
                        "created_at": r.created_at,
                    }
                )
    return counts


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")
