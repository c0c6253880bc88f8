"""The people lists: one stored summary a person (migration 0011: face counts by how they
were assigned, photos, distinct faces, the representative face), made again only for the
people whose faces changed since (statement triggers mark them), so that a page of people does
not grow with the faces."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Connection, text

from ..dedup.tiers import distinct_count, picture_pairs
from ..results import PersonSummary
from ..vision.weights import model_distances
from .codec import decode_halfvec_send
from .store import Store


class PersonSummaries:
    def __init__(self, store: Store, model: str) -> None:
        self.engine = store.engine
        self.reads = store.reads  # listings may come from a replica
        self.model = model  # whose embeddings representatives and copies are measured with

    SUMMARY_CHUNK = 5000  # people summarised in one statement

    def people(
        self,
        *,
        include_hidden: bool = False,
        within: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[PersonSummary]:
        """People by their number of faces (hidden ones only when asked), `limit` of them from
        `offset` (None: all), with face counts by how they were assigned and a representative
        face: the one nearest the person's centre, with `within` of those whose photos lie in
        those folders. Read from the stored summaries, made again first for the people whose
        faces changed since (one row a person: the list does not grow with the faces)."""
        self.summarise_changed()
        with self.reads.connect() as conn:
            rows = conn.execute(
                text("""
                SELECT i.id, i.name, i.hidden, s.faces, s.distinct_faces, s.enrolled, s.confirmed, s.proposed,
                       s.clustered, s.photos, s.representative_face_id, p.path AS representative_photo
                FROM person_summaries s JOIN identities i ON i.id = s.identity_id
                LEFT JOIN faces f ON f.id = s.representative_face_id LEFT JOIN photos p ON p.id = f.photo_id
                WHERE :include_hidden OR NOT i.hidden
                ORDER BY s.faces DESC, s.identity_id LIMIT :limit OFFSET :offset"""),
                {"include_hidden": include_hidden, "limit": limit, "offset": offset},
            ).all()
            people = [PersonSummary(**r._mapping) for r in rows]
            if within is None:
                return people
            # a stored representative the caller may not show makes way for the nearest one it may
            prefixes = tuple(os.path.join(folder, "") for folder in within)
            outside = [p.id for p in people if not (p.representative_photo or "").startswith(prefixes)]
            shown = self._representatives(conn, outside, list(prefixes)) if outside and prefixes else {}
        return [
            p.model_copy(
                update={
                    "representative_face_id": shown.get(p.id, (None, None))[0],
                    "representative_photo": shown.get(p.id, (None, None))[1],
                }
            )
            if p.id in outside
            else p
            for p in people
        ]

    def count_people(self, *, include_hidden: bool = False) -> int:
        with self.reads.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM identities WHERE :include_hidden OR NOT hidden"),
                {"include_hidden": include_hidden},
            ).scalar_one()

    def summarise_changed(self, say: Callable[[str], None] | None = None) -> int:
        """Make the summaries of the people marked changed (and of everyone when they were made
        with another model's embeddings) again; returns how many. Two processes at once: the
        second waits for the first's marks and finds none left."""
        with self.engine.connect() as conn:
            made_with = conn.execute(
                text("SELECT value FROM database_settings WHERE name = 'people_summary_model'")
            ).scalar()
            if (
                made_with == self.model
                and not conn.execute(text("SELECT EXISTS (SELECT 1 FROM people_to_summarise)")).scalar()
            ):
                return 0
        started = time.monotonic()
        with self.engine.begin() as conn:
            if made_with != self.model:
                conn.execute(
                    text(
                        "INSERT INTO people_to_summarise (identity_id) SELECT id FROM identities ON CONFLICT DO NOTHING"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO database_settings (name, value) VALUES ('people_summary_model', :model) "
                        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                    ),
                    {"model": self.model},
                )
            changed = sorted(r[0] for r in conn.execute(text("DELETE FROM people_to_summarise RETURNING identity_id")))
            for start in range(0, len(changed), self.SUMMARY_CHUNK):
                self._summarise(conn, changed[start : start + self.SUMMARY_CHUNK])
                if say is not None:
                    done = min(len(changed), start + self.SUMMARY_CHUNK)
                    say(f"summarised {done:,}/{len(changed):,} people, {time.monotonic() - started:.0f} s")
        return len(changed)

    def _summarise(self, conn: Connection, ids: list[int]) -> None:
        conn.execute(
            text("""
            WITH members AS (
                SELECT fi.identity_id, fi.source, f.id AS face_id, f.photo_id, e.embedding
                FROM face_identities fi JOIN faces f ON f.id = fi.face_id
                LEFT JOIN face_embeddings e ON e.face_id = f.id AND e.model = :model
                WHERE fi.identity_id = ANY(:ids)),
            centres AS (SELECT identity_id, avg(embedding) AS centre FROM members GROUP BY identity_id),
            representatives AS (
                SELECT DISTINCT ON (m.identity_id) m.identity_id, m.face_id
                FROM members m JOIN centres c ON c.identity_id = m.identity_id
                ORDER BY m.identity_id, m.embedding <-> c.centre, m.face_id)
            INSERT INTO person_summaries AS s (identity_id, model, faces, distinct_faces, enrolled, confirmed,
                                               proposed, clustered, photos, representative_face_id)
            SELECT i.id, :model, count(m.face_id), count(m.face_id),
                   count(*) FILTER (WHERE m.source = 'enrolled'),
                   count(*) FILTER (WHERE m.source = 'confirmed'),
                   count(*) FILTER (WHERE m.source = 'proposed'),
                   count(*) FILTER (WHERE m.source = 'clustered'),
                   count(DISTINCT m.photo_id), r.face_id
            FROM identities i
            LEFT JOIN members m ON m.identity_id = i.id
            LEFT JOIN representatives r ON r.identity_id = i.id
            WHERE i.id = ANY(:ids)
            GROUP BY i.id, r.face_id
            ON CONFLICT (identity_id) DO UPDATE SET
                model = EXCLUDED.model, faces = EXCLUDED.faces, distinct_faces = EXCLUDED.distinct_faces,
                enrolled = EXCLUDED.enrolled, confirmed = EXCLUDED.confirmed, proposed = EXCLUDED.proposed,
                clustered = EXCLUDED.clustered, photos = EXCLUDED.photos,
                representative_face_id = EXCLUDED.representative_face_id"""),
            {"ids": ids, "model": self.model},
        )
        copies = self._distinct_faces(conn, self.model, ids)
        conn.execute(
            text("""
            UPDATE person_summaries s SET distinct_faces = d.n
            FROM unnest(CAST(:ids AS bigint[]), CAST(:counts AS integer[])) AS d(id, n)
            WHERE s.identity_id = d.id AND s.distinct_faces <> d.n"""),
            {"ids": list(copies), "counts": list(copies.values())},
        )

    def _representatives(self, conn: Connection, ids: list[int], prefixes: list[str]) -> dict[int, tuple[int, str]]:
        """Each person's face nearest their centre among the faces in photos under `prefixes`."""
        rows = conn.execute(
            text("""
            WITH members AS (
                SELECT fi.identity_id, f.id AS face_id, p.path, e.embedding,
                       EXISTS (SELECT 1 FROM unnest(CAST(:prefixes AS text[])) AS r WHERE starts_with(p.path, r)) AS shown
                FROM face_identities fi JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id
                LEFT JOIN face_embeddings e ON e.face_id = f.id AND e.model = :model
                WHERE fi.identity_id = ANY(:ids)),
            centres AS (SELECT identity_id, avg(embedding) AS centre FROM members GROUP BY identity_id)
            SELECT DISTINCT ON (m.identity_id) m.identity_id, m.face_id, m.path
            FROM members m JOIN centres c ON c.identity_id = m.identity_id
            WHERE m.shown
            ORDER BY m.identity_id, m.embedding <-> c.centre, m.face_id"""),
            {"ids": ids, "prefixes": prefixes, "model": self.model},
        ).all()
        return {r.identity_id: (r.face_id, r.path) for r in rows}

    @staticmethod
    def _distinct_faces(conn: Connection, model: str, ids: Sequence[int]) -> dict[int, int]:
        """Per person of `ids`, their faces with a face and its copies counted once: faces in
        photos that are copies of one picture (dedup's tiers 1-2) and nearly the same face
        (within the model's same-face distance, as clustering's copies). Embeddings are read only for such pairs."""
        faces: dict[int, list[tuple[int, int, str | None, int | None]]] = {}
        for r in conn.execute(
            text(
                "SELECT fi.identity_id, f.id, f.photo_id, p.content_hash, p.phash FROM face_identities fi "
                "JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id "
                "WHERE fi.identity_id = ANY(:ids) ORDER BY f.id"
            ),
            {"ids": list(ids)},
        ):
            faces.setdefault(r.identity_id, []).append((r.id, r.photo_id, r.content_hash, r.phash))
        candidates = {
            person: picture_pairs([(photo, sha, phash) for _, photo, sha, phash in members])
            for person, members in faces.items()
        }
        wanted = sorted({faces[p][i][0] for p, pairs in candidates.items() for pair in pairs for i in pair})
        same_face = model_distances(model).same_face_distance
        vectors = {
            r.id: decode_halfvec_send(r.raw)
            for r in conn.execute(
                text(
                    "SELECT face_id AS id, halfvec_send(embedding) AS raw FROM face_embeddings "
                    "WHERE face_id = ANY(:ids) AND model = :model"
                ),
                {"ids": wanted, "model": model},
            )
        }
        return {
            person: distinct_count(
                len(members),
                (
                    (a, b)
                    for a, b in candidates[person]
                    if members[a][0] in vectors
                    and members[b][0] in vectors
                    and float(np.linalg.norm(vectors[members[a][0]] - vectors[members[b][0]])) <= same_face
                ),
            )
            for person, members in faces.items()
        }
