"""`facedb calibrate`: the faces it measures, and the thresholds it stores per model."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from ..records import FaceSample
from ..results import StoredCalibration
from .codec import decode_halfvec_send
from .sql import HUMAN_SOURCES_SQL
from .store import Store

# The faces of a model whichever runtime made them: the runtimes give the same embeddings
# (within 1e-5, onnx_conversion.py), so a calibration holds for all of them.
_SAME_MODEL = """e.embedding_model_id IN (
    SELECT o.id FROM embedding_models o JOIN embedding_models m
      ON (o.name, o.version, o.sha256, o.preprocessing) = (m.name, m.version, m.sha256, m.preprocessing)
    WHERE m.id = :model)"""


class CalibrationStore:
    """`facedb calibrate`: the faces it measures, and the thresholds it stores."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def _sample(self, where: str, params: dict, limit: int) -> FaceSample:
        # md5 of the id with a seed: a repeatable sample, the same on every run over the same faces
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"""
                SELECT f.id, coalesce(fi.identity_id, -1) AS identity_id, p.content_hash,
                       halfvec_send(e.embedding) AS raw
                FROM faces f JOIN face_embeddings e ON e.face_id = f.id JOIN photos p ON p.id = f.photo_id
                LEFT JOIN face_identities fi ON fi.face_id = f.id
                LEFT JOIN identities i ON i.id = fi.identity_id
                WHERE {_SAME_MODEL} AND {where}
                ORDER BY md5(f.id::text || :seed) LIMIT :limit"""),
                params | {"limit": limit},
            ).all()
        return _face_sample(rows)

    def placed_faces(self, model_id: int, limit: int, seed: str) -> FaceSample:
        """Faces a person put in a named identity (enrolled, confirmed): the genuine side."""
        return self._sample(
            f"fi.source IN {HUMAN_SOURCES_SQL} AND i.name IS NOT NULL", {"model": model_id, "seed": seed}, limit
        )

    def faces_of_nobody(self, model_id: int, limit: int, seed: str) -> FaceSample:
        """Faces of no named identity (unassigned, or clustered into an unnamed person), but none
        from a photo whose bytes are a photo of a placed face (a copy of an enrolled photo is no
        stranger)."""
        return self._sample(
            f"""(fi.face_id IS NULL OR i.name IS NULL) AND NOT EXISTS (
                SELECT 1 FROM photos q JOIN faces g ON g.photo_id = q.id
                JOIN face_identities gi ON gi.face_id = g.id AND gi.source IN {HUMAN_SOURCES_SQL}
                WHERE q.content_hash = p.content_hash)""",
            {"model": model_id, "seed": seed},
            limit,
        )

    def rejected_faces(self, model_id: int, limit: int, seed: str) -> FaceSample:
        """Faces a person said are not someone (`facedb reject`), each with the identity it is
        not: impostors against that person's placed faces, known to be right."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"""
                SELECT f.id, r.identity_id, p.content_hash, halfvec_send(e.embedding) AS raw
                FROM face_rejections r JOIN faces f ON f.id = r.face_id JOIN photos p ON p.id = f.photo_id
                JOIN face_embeddings e ON e.face_id = f.id
                WHERE {_SAME_MODEL}
                ORDER BY md5(f.id::text || r.identity_id::text || :seed) LIMIT :limit"""),
                {"model": model_id, "seed": seed, "limit": limit},
            ).all()
        return _face_sample(rows)

    def unnamed_people(self) -> int:
        """Unnamed people (clusters) with faces: strangers `--with-unlabelled` could count."""
        with self.engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM identities i WHERE i.name IS NULL "
                    "AND EXISTS (SELECT 1 FROM face_identities fi WHERE fi.identity_id = i.id)"
                )
            ).scalar_one()

    def identity_names(self, ids: list[int]) -> dict[int, str | None]:
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name FROM identities WHERE id = ANY(:ids)"), {"ids": list(ids)})
            return {r.id: r.name for r in rows}

    def save(self, model_id: int, threshold: float, far_target: float, evidence: dict) -> int:
        import json

        with self.engine.begin() as conn:
            return conn.execute(
                text(
                    "INSERT INTO calibrations (embedding_model_id, threshold, far_target, evidence) "
                    "VALUES (:model, :threshold, :far, CAST(:evidence AS jsonb)) RETURNING id"
                ),
                {"model": model_id, "threshold": threshold, "far": far_target, "evidence": json.dumps(evidence)},
            ).scalar_one()

    def latest(self, name: str, version: str, sha256: str, preprocessing: str) -> StoredCalibration | None:
        """The calibration in force for the model (looked up without creating the model's row)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text("""
                SELECT c.id, c.threshold, c.far_target, c.evidence, c.created_at
                FROM calibrations c JOIN embedding_models m ON m.id = c.embedding_model_id
                WHERE m.name = :name AND m.version = :version AND m.sha256 = :sha256 AND m.preprocessing = :pre
                ORDER BY c.created_at DESC, c.id DESC LIMIT 1"""),
                {"name": name, "version": version, "sha256": sha256, "pre": preprocessing},
            ).first()
        if row is None:
            return None
        return StoredCalibration(
            id=row.id,
            threshold=row.threshold,
            far_target=row.far_target,
            evidence=row.evidence,
            created_at=row.created_at.isoformat(timespec="seconds"),
        )


def _face_sample(rows) -> FaceSample:
    return FaceSample(
        np.array([r.id for r in rows], np.int64),
        np.array([r.identity_id for r in rows], np.int64),
        [r.content_hash for r in rows],
        np.stack([decode_halfvec_send(r.raw) for r in rows]) if rows else np.zeros((0, 0), np.float32),
    )
