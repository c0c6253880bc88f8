"""The nearest faces and people of an embedding, through each model's search index, then
re-ranked on the stored embeddings; read from a replica that has caught up, else the primary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import text

from ..records import NearestIdentity
from .codec import vector_literal
from .database import Database
from .search_index import of_model, search_index, tune_search


class Nearest:
    def __init__(self, database: Database) -> None:
        self.reads = database.reads

    def identities(self, embedding: np.ndarray, top_k: int, model: str, ef_search: int = 100) -> list[NearestIdentity]:
        """The nearest face of each of the `top_k` nearest identities (never one identity twice),
        by the embeddings of `model` (the query's)."""
        query = vector_literal(embedding)
        with self.reads.connect() as conn, conn.begin():
            index = search_index(conn, model, len(embedding))
            limit = max(50, top_k * 20)
            while True:
                tune_search(conn, max(ef_search, index.candidates(limit)))
                rows = conn.execute(
                    text(f"""
                    SELECT c.identity_id, i.name, c.source, c.face_id,
                           c.embedding::vector <-> CAST(:q AS vector) AS distance
                    FROM (
                        SELECT fi.identity_id, fi.source, e.face_id, e.embedding
                        FROM face_embeddings e JOIN face_identities fi ON fi.face_id = e.face_id
                        WHERE {of_model("e", model)}
                        ORDER BY {index.order("e.embedding", "CAST(:q AS halfvec)")}
                        LIMIT :candidates) c
                    JOIN identities i ON i.id = c.identity_id
                    ORDER BY distance LIMIT :limit"""),
                    {"q": query, "limit": limit, "candidates": index.candidates(limit)},
                ).all()
                best: dict[int, NearestIdentity] = {}
                for r in rows:  # distances from the stored halves to the query as it is
                    if r.identity_id not in best or r.distance < best[r.identity_id].distance:
                        best[r.identity_id] = NearestIdentity(
                            r.identity_id, r.name, float(r.distance), r.face_id, r.source
                        )
                # One identity with many close faces can fill the whole window: widen it until
                # enough distinct identities appear or fewer rows than asked say all were seen.
                if len(best) >= top_k or len(rows) < limit:
                    return sorted(best.values(), key=lambda c: c.distance)[:top_k]
                limit *= 4

    def faces(self, embedding: np.ndarray, k: int, model: str, ef_search: int = 100) -> list[int]:
        """Ids of the k nearest faces, as the search index finds them (the benchmark's recall)."""
        with self.reads.connect() as conn, conn.begin():
            index = search_index(conn, model, len(embedding))
            tune_search(conn, max(ef_search, index.candidates(k)))
            return [
                r[0]
                for r in conn.execute(
                    text(f"""
                    SELECT face_id FROM (
                        SELECT e.face_id, e.embedding FROM face_embeddings e WHERE {of_model("e", model)}
                        ORDER BY {index.order("e.embedding", "CAST(:q AS halfvec)")} LIMIT :candidates) c
                    ORDER BY c.embedding::vector <-> CAST(:q AS vector) LIMIT :k"""),
                    {"q": vector_literal(embedding), "k": k, "candidates": index.candidates(k)},
                )
            ]

    def faces_within(
        self, embedding: np.ndarray, identity_ids: Sequence[int], threshold: float, model: str
    ) -> dict[int, tuple[int, int]]:
        """identity id -> (faces within threshold, all faces with an embedding of `model`), counted exactly."""
        if not identity_ids:
            return {}
        with self.reads.connect() as conn:
            rows = conn.execute(
                text("""
                SELECT fi.identity_id,
                       count(*) FILTER (WHERE e.embedding::vector <-> CAST(:q AS vector) <= :threshold) AS near,
                       count(*) AS total
                FROM face_identities fi JOIN face_embeddings e ON e.face_id = fi.face_id AND e.model = :model
                WHERE fi.identity_id = ANY(:ids)
                GROUP BY fi.identity_id"""),
                {"q": vector_literal(embedding), "threshold": threshold, "ids": list(identity_ids), "model": model},
            )
            return {r.identity_id: (r.near, r.total) for r in rows}
