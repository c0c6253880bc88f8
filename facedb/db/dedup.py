"""The dedup report's candidates, found with indexes rather than by comparing all pairs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text

from ..dedup.tiers import DedupFace, DedupPhoto
from .codec import decode_halfvec_send
from .search_index import of_model, search_index, tune_search
from .sql import INDEXED_SQL
from .store import Store


class DedupStore:
    """Candidate pairs for the dedup report, found with indexes rather than all pairs."""

    def __init__(self, store: Store, model: str, dimension: int) -> None:
        self.engine = store.engine
        self.model = model  # faces are compared by this model's embeddings
        self.dimension = dimension

    @staticmethod
    def _scope(alias: str, prefixes: Sequence[str]) -> str:
        if not prefixes:
            return ""
        return (
            f" AND ({alias}.path = ANY(:prefixes) OR EXISTS (SELECT 1 FROM unnest(CAST(:dirs AS text[])) AS d "
            f"WHERE starts_with({alias}.path, d)))"
        )

    @staticmethod
    def _params(prefixes: Sequence[str]) -> dict:
        return {"prefixes": list(prefixes), "dirs": [p.rstrip("/") + "/" for p in prefixes]}

    def missing_phash(self, prefixes: Sequence[str]) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        f"SELECT id, path FROM photos p WHERE status = {INDEXED_SQL} AND phash IS NULL"
                        + self._scope("p", prefixes)
                        + " ORDER BY id"
                    ),
                    self._params(prefixes),
                )
            ]

    def set_phash(self, values: Sequence[tuple[int, int]]) -> None:
        if values:
            with self.engine.begin() as conn:
                conn.execute(
                    text("UPDATE photos SET phash = :h WHERE id = :id"), [{"id": i, "h": h} for i, h in values]
                )

    def photos(self, prefixes: Sequence[str]) -> dict[int, DedupPhoto]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, path, content_hash, size, mtime_ns, width, height, format, taken_at, camera, "
                    f"gps_lat IS NOT NULL AS has_gps, phash, face_count FROM photos p WHERE status = {INDEXED_SQL}"
                    + self._scope("p", prefixes)
                ),
                self._params(prefixes),
            ).all()
        return {r.id: DedupPhoto(*r) for r in rows}

    def identical(self, prefixes: Sequence[str]) -> list[list[int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT array_agg(id ORDER BY id) FROM photos p WHERE status = {INDEXED_SQL} AND content_hash IS NOT NULL"
                    + self._scope("p", prefixes)
                    + " GROUP BY content_hash HAVING count(*) > 1 ORDER BY min(id)"
                ),
                self._params(prefixes),
            ).all()
        return [list(r[0]) for r in rows]

    def phash_pairs(self, prefixes: Sequence[str], max_bits: int) -> list[tuple[int, int, int]]:
        """Photo pairs whose hashes share a 16-bit part and differ in at most max_bits bits."""
        parts = " UNION ".join(
            f"SELECT a.id AS a, b.id AS b, bit_count(CAST(a.phash # b.phash AS bit(64))) AS bits "
            f"FROM photos a JOIN photos b ON ((a.phash >> {16 * i}) & 65535) = ((b.phash >> {16 * i}) & 65535) "
            f"AND a.id < b.id WHERE a.status = {INDEXED_SQL} AND b.status = {INDEXED_SQL} "
            f"AND a.phash IS NOT NULL AND b.phash IS NOT NULL" + self._scope("a", prefixes) + self._scope("b", prefixes)
            for i in range(4)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT a, b, bits FROM ({parts}) pairs WHERE bits <= :max_bits"),
                self._params(prefixes) | {"max_bits": max_bits},
            ).all()
        return [tuple(r) for r in rows]

    def burst_pairs(self, prefixes: Sequence[str], seconds: float) -> list[tuple[int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT a.id, b.id FROM photos a JOIN photos b ON b.taken_at BETWEEN a.taken_at - make_interval("
                    "secs => :s) AND a.taken_at + make_interval(secs => :s) AND a.id < b.id "
                    f"WHERE a.status = {INDEXED_SQL} AND b.status = {INDEXED_SQL} AND a.taken_at IS NOT NULL"
                    + self._scope("a", prefixes)
                    + self._scope("b", prefixes)
                ),
                self._params(prefixes) | {"s": seconds},
            ).all()
        return [tuple(r) for r in rows]

    def face_pairs(self, prefixes: Sequence[str], radius: float, k: int = 10) -> list[tuple[int, int, float]]:
        """Faces in different photos within `radius` of each other: each face's k nearest, via
        the HNSW index (one index probe per face, not all pairs)."""
        with self.engine.begin() as conn:
            index = search_index(conn, self.model, self.dimension)
            tune_search(conn, max(40, k * 4, index.candidates(k)))
            rows = conn.execute(
                text(f"""
                SELECT f.id, n.id, n.d FROM faces f JOIN photos p ON p.id = f.photo_id
                JOIN face_embeddings e ON e.face_id = f.id AND {of_model("e", self.model)}
                CROSS JOIN LATERAL (
                    SELECT c.id, c.embedding <-> e.embedding AS d FROM (
                        SELECT g.id, h.embedding
                        FROM face_embeddings h JOIN faces g ON g.id = h.face_id JOIN photos q ON q.id = g.photo_id
                        WHERE {of_model("h", self.model)} AND g.photo_id <> f.photo_id {self._scope("q", prefixes)}
                        ORDER BY {index.order("h.embedding", "e.embedding")} LIMIT :candidates) c
                    ORDER BY d LIMIT :k) n
                WHERE n.d <= :radius {self._scope("p", prefixes)}"""),
                self._params(prefixes) | {"k": k, "candidates": index.candidates(k), "radius": radius},
            ).all()
        pairs = {}
        for a, b, d in rows:
            pairs[(min(a, b), max(a, b))] = float(d)
        return [(a, b, d) for (a, b), d in sorted(pairs.items())]

    def faces(self, photo_ids: Sequence[int] = (), face_ids: Sequence[int] = ()) -> list[DedupFace]:
        if not photo_ids and not face_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, photo_id, box_x, box_y, box_w, box_h, halfvec_send(e.embedding) AS raw FROM faces f "
                    "JOIN face_embeddings e ON e.face_id = f.id AND e.model = :model "
                    "WHERE photo_id = ANY(:photos) OR id = ANY(:faces) ORDER BY id"
                ),
                {"photos": list(photo_ids), "faces": list(face_ids), "model": self.model},
            ).all()
        return [
            DedupFace(r.id, r.photo_id, (r.box_x, r.box_y, r.box_w, r.box_h), decode_halfvec_send(r.raw)) for r in rows
        ]

    def thumbnails(self, face_ids: Sequence[int]) -> dict[int, bytes]:
        with self.engine.connect() as conn:
            return {
                r.id: bytes(r.thumbnail)
                for r in conn.execute(
                    text("SELECT id, thumbnail FROM faces WHERE id = ANY(:ids) AND thumbnail IS NOT NULL"),
                    {"ids": list(face_ids)},
                )
            }
