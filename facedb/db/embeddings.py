"""The embeddings of several models side by side: which model is the database's default, how
many faces each model has embedded, and `facedb reembed`'s reads and idempotent writes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text

from .codec import EmbeddingRow, encode_embedding_rows
from .store import Store


@dataclass(frozen=True)
class FaceToEmbed:
    face_id: int
    box: tuple[float, float, float, float]
    landmarks: list[float]
    score: float


@dataclass(frozen=True)
class PhotoToEmbed:
    photo_id: int
    path: str
    content_hash: str | None
    faces: list[FaceToEmbed]


# Face f has no embedding of :model made with :preprocessing (one made with another, by an older
# facedb's crop, is due for reembed as much as none).
LACKING = """NOT EXISTS (
    SELECT 1 FROM face_embeddings e JOIN embedding_models m ON m.id = e.embedding_model_id
    WHERE e.face_id = f.id AND e.model = :model AND m.preprocessing = :preprocessing)"""


class EmbeddingStore:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.reads = store.reads

    def default_model(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT value FROM database_settings WHERE name = 'default_model'")).scalar()

    def set_default_model(self, model: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO database_settings (name, value) VALUES ('default_model', :model) "
                    "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                ),
                {"model": model},
            )

    def counts(self) -> tuple[int, dict[tuple[str, str], int]]:
        """(faces, faces with an embedding of each (model, preprocessing)), from the stored
        counts (migrations 0012, 0013): a few rows read, whatever the archive's size."""
        with self.reads.connect() as conn:
            faces = conn.execute(
                text("SELECT coalesce(sum(change), 0) FROM archive_count_changes WHERE name = 'faces'")
            ).scalar_one()
            made: dict[tuple[str, str], int] = {
                (r.model, r.preprocessing): int(r.n)
                for r in conn.execute(
                    text("""
                    SELECT m.version AS model, m.preprocessing, sum(c.change) AS n
                    FROM archive_count_changes c JOIN embedding_models m ON c.name = 'embeddings:' || m.id
                    WHERE c.name LIKE 'embeddings:%'
                    GROUP BY m.version, m.preprocessing HAVING sum(c.change) <> 0""")
                )
            }
        return int(faces), made

    def lacking(self, model: str, preprocessing: str) -> tuple[int, int]:
        """(faces without an embedding of `model` made with `preprocessing`, photos they are in):
        an embedding made with another (an older facedb's crop) is due for `reembed` too."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(f"""
                SELECT count(*) AS faces, count(DISTINCT f.photo_id) AS photos FROM faces f
                WHERE {LACKING}"""),
                {"model": model, "preprocessing": preprocessing},
            ).one()
        return row.faces, row.photos

    def photos_lacking(self, model: str, preprocessing: str, after_photo: int, faces: int) -> list[PhotoToEmbed]:
        """The next photos (by id, after `after_photo`) with faces that have no embedding of
        `model` made with `preprocessing`, about `faces` faces in all (whole photos: each is
        decoded once)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"""
                WITH wanted AS (
                    SELECT f.photo_id, count(*) AS n FROM faces f
                    WHERE f.photo_id > :after AND {LACKING}
                    GROUP BY f.photo_id ORDER BY f.photo_id LIMIT :faces),
                taken AS (
                    SELECT photo_id FROM (
                        SELECT photo_id, sum(n) OVER (ORDER BY photo_id) - n AS before FROM wanted) w
                    WHERE before < :faces)
                SELECT p.id AS photo_id, p.path, p.content_hash, f.id, f.box_x, f.box_y, f.box_w, f.box_h,
                       f.landmarks, f.score
                FROM taken t JOIN photos p ON p.id = t.photo_id
                JOIN faces f ON f.photo_id = p.id
                WHERE {LACKING}
                ORDER BY p.id, f.id"""),
                {"model": model, "preprocessing": preprocessing, "after": after_photo, "faces": faces},
            ).all()
        photos: dict[int, PhotoToEmbed] = {}
        for r in rows:
            photo = photos.setdefault(r.photo_id, PhotoToEmbed(r.photo_id, r.path, r.content_hash, []))
            photo.faces.append(
                FaceToEmbed(r.id, (r.box_x, r.box_y, r.box_w, r.box_h), list(r.landmarks), float(r.score))
            )
        return list(photos.values())

    def write(self, rows: Sequence[EmbeddingRow], replace: bool = False) -> int:
        """Store embeddings in one transaction; a face that already has one of the model keeps
        it (a resumed or repeated run writes nothing twice), unless `replace` (an embedding made
        with an older preprocessing); a face deleted meanwhile is left out. Returns how many
        were written."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]  # open: inside begin()
            try:
                cursor.execute(
                    "CREATE TEMP TABLE staged_embeddings (face_id bigint, model text, embedding_model_id smallint, "
                    "embedding halfvec) ON COMMIT DROP"
                )
                cursor.copy_expert(
                    "COPY staged_embeddings FROM STDIN WITH (FORMAT binary)", io.BytesIO(encode_embedding_rows(rows))
                )
                cursor.execute(
                    "INSERT INTO face_embeddings (face_id, model, embedding_model_id, embedding) "
                    "SELECT s.face_id, s.model, s.embedding_model_id, s.embedding FROM staged_embeddings s "
                    "JOIN faces f ON f.id = s.face_id ON CONFLICT (face_id, model) "
                    + (
                        "DO UPDATE SET embedding = EXCLUDED.embedding, embedding_model_id = EXCLUDED.embedding_model_id"
                        if replace
                        else "DO NOTHING"
                    )
                )
                return cursor.rowcount
            finally:
                cursor.close()
