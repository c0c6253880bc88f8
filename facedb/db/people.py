"""People: clustering's input and its changes, naming, merging, moving, rejecting, forgetting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Connection, text

from ..dedup.tiers import SAME_FACE_DISTANCE, distinct_count, picture_pairs
from ..faces import Box
from ..people.plan import ClusterInputs, NewFacesInputs, PersonFace
from ..results import ListedFace, PersonSummary
from .codec import decode_halfvec_send
from .search_index import search_index
from .sql import SYSTEM_SOURCES_SQL
from .store import Store, of_model


class PeopleStore:
    """Queries for people: clustering input and output, naming, merging, forgetting."""

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.engine = store.engine
        self.reads = store.reads  # listings may come from a replica
        self.model = model  # whose embeddings clustering, centres and copies are measured with

    def cluster_inputs(self) -> ClusterInputs:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("""
                SELECT f.id, f.photo_id, halfvec_send(e.embedding) AS raw, fi.identity_id, fi.source,
                       p.content_hash, p.phash
                FROM faces f JOIN face_embeddings e ON e.face_id = f.id AND e.model = :model
                JOIN photos p ON p.id = f.photo_id LEFT JOIN face_identities fi ON fi.face_id = f.id
                ORDER BY f.id"""),
                {"model": self.model},
            ).all()
            rejections = [
                (r.face_id, r.identity_id)
                for r in conn.execute(text("SELECT face_id, identity_id FROM face_rejections"))
            ]
            identities = conn.execute(text("SELECT id, name, hidden FROM identities")).all()
        names: dict[int, str | None] = {r.id: r.name for r in identities}
        vectors = np.stack([decode_halfvec_send(r.raw) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        return ClusterInputs(
            face_ids=np.array([r.id for r in rows], np.int64),
            photo_ids=np.array([r.photo_id for r in rows], np.int64),
            vectors=vectors,
            identity_ids=np.array([r.identity_id if r.identity_id is not None else -1 for r in rows], np.int64),
            sources=[r.source for r in rows],
            rejections=rejections,
            names=names,
            hidden=frozenset(r.id for r in identities if r.hidden),
            photo_hashes=[r.content_hash for r in rows],
            photo_phashes=[r.phash for r in rows],
        )

    # ---- incremental clustering: the faces of nobody since the last run, through the index ----
    def clustered_through(self) -> int | None:
        """The newest face the last clustering run considered (None: never clustered)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                text("SELECT value FROM database_settings WHERE name = 'clustered_through_face'")
            ).scalar()
        return None if value is None else int(value)

    def new_faces_of_nobody(self, after_face: int) -> list[int]:
        """Faces in no person, with an embedding of the model, newer than `after_face`."""
        with self.engine.connect() as conn:
            return [
                r[0]
                for r in conn.execute(
                    text("""
                    SELECT f.id FROM faces f JOIN face_embeddings e ON e.face_id = f.id AND e.model = :model
                    WHERE f.id > :after AND NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.face_id = f.id)
                    ORDER BY f.id"""),
                    {"model": self.model, "after": after_face},
                )
            ]

    def neighbours_through_index(
        self,
        face_ids: Sequence[int],
        k: int,
        radius: float,
        dimension: int,
        say: Callable[[str], None] | None = None,
        chunk: int = 200,
    ) -> list[tuple[int, int, float]]:
        """(face, other face, distance) for each face's k nearest within `radius`, by the search
        index (candidates re-ranked on the stored embeddings): one index probe a face."""
        edges: list[tuple[int, int, float]] = []
        started = time.monotonic()
        with self.engine.connect() as conn:
            index = search_index(conn, self.model, dimension)
            conn.rollback()  # each chunk below is a transaction of its own (SET LOCAL)
            for start in range(0, len(face_ids), chunk):
                with conn.begin():
                    Store._tune_search(conn, max(40, k * 4, index.candidates(k)))
                    edges.extend(
                        (r.face_id, r.other, float(r.d))
                        for r in conn.execute(
                            text(f"""
                            SELECT e.face_id, n.face_id AS other, n.d FROM face_embeddings e
                            CROSS JOIN LATERAL (
                                SELECT c.face_id, c.embedding <-> e.embedding AS d FROM (
                                    SELECT h.face_id, h.embedding FROM face_embeddings h
                                    WHERE {of_model("h", self.model)} AND h.face_id <> e.face_id
                                    ORDER BY {index.order("h.embedding", "e.embedding")} LIMIT :candidates) c
                                ORDER BY d, c.face_id LIMIT :k) n
                            WHERE {of_model("e", self.model)} AND e.face_id = ANY(:ids) AND n.d <= :radius"""),
                            {
                                "ids": list(face_ids[start : start + chunk]),
                                "k": k,
                                "candidates": index.candidates(k),
                                "radius": radius,
                            },
                        )
                    )
                if say is not None:
                    done = min(len(face_ids), start + chunk)
                    rate = done / max(time.monotonic() - started, 1e-9)
                    say(
                        f"looked up the neighbours of {done:,}/{len(face_ids):,} new faces, {rate:,.0f} a second, "
                        f"{(len(face_ids) - done) / rate:,.0f} s to go"
                    )
        return edges

    def new_faces_inputs(self, face_ids: Sequence[int], edges: Sequence[tuple[int, int, float]]) -> NewFacesInputs:
        involved = sorted(set(face_ids) | {b for _, b, _ in edges})
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("""
                SELECT f.id, f.photo_id, fi.identity_id, fi.source, p.content_hash, p.phash
                FROM faces f JOIN photos p ON p.id = f.photo_id LEFT JOIN face_identities fi ON fi.face_id = f.id
                WHERE f.id = ANY(:ids)"""),
                {"ids": involved},
            ).all()
            rejections: dict[int, set[int]] = {}
            for r in conn.execute(
                text("SELECT face_id, identity_id FROM face_rejections WHERE face_id = ANY(:ids)"),
                {"ids": list(face_ids)},
            ):
                rejections.setdefault(r.face_id, set()).add(r.identity_id)
            hidden = frozenset(
                r[0]
                for r in conn.execute(
                    text("SELECT id FROM identities WHERE hidden AND id = ANY(:ids)"),
                    {"ids": sorted({r.identity_id for r in rows if r.identity_id is not None})},
                )
            )
        return NewFacesInputs(
            face_ids=list(face_ids),
            edges=list(edges),
            photo_of={r.id: r.photo_id for r in rows},
            person_of={r.id: (r.identity_id, r.source) for r in rows if r.identity_id is not None},
            hidden=hidden,
            rejections=rejections,
            pictures={r.id: (r.content_hash, r.phash) for r in rows},
        )

    def names_of(self, ids: Sequence[int]) -> dict[int, str | None]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(text("SELECT id, name FROM identities WHERE id = ANY(:ids)"), {"ids": list(ids)}).all()
            )

    def apply_assignments(
        self,
        release: Sequence[int],
        assign: Sequence[tuple[int, int | str, str]],
        new_people: Sequence[str],
        clustered_through: int | None = None,
    ) -> dict[str, int]:
        """In one transaction: drop system assignments of `release` faces, create one unnamed
        identity per key in `new_people`, then assign (face, identity id or new key, source),
        and remember the newest face this run considered. Unnamed identities left without
        faces are removed. Returns new key -> identity id."""
        created: dict[str, int] = {}
        with self.engine.begin() as conn:
            if clustered_through is not None:
                conn.execute(
                    text(
                        "INSERT INTO database_settings (name, value) VALUES ('clustered_through_face', :face) "
                        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                    ),
                    {"face": str(clustered_through)},
                )
            if release:
                conn.execute(
                    text(f"DELETE FROM face_identities WHERE face_id = ANY(:ids) AND source IN {SYSTEM_SOURCES_SQL}"),
                    {"ids": list(release)},
                )
            for key in new_people:
                created[key] = conn.execute(
                    text("INSERT INTO identities (name) VALUES (NULL) RETURNING id")
                ).scalar_one()
            if assign:
                faces = [f for f, _, _ in assign]
                people = [created[p] if isinstance(p, str) else p for _, p, _ in assign]
                sources = [s for _, _, s in assign]
                # never overwrite what a person decided (enrolled / confirmed)
                conn.execute(
                    text(f"""
                    INSERT INTO face_identities (face_id, identity_id, source)
                    SELECT * FROM unnest(CAST(:faces AS bigint[]), CAST(:people AS bigint[]), CAST(:sources AS text[]))
                    ON CONFLICT (face_id) DO UPDATE SET identity_id = EXCLUDED.identity_id, source = EXCLUDED.source,
                        assigned_at = now()
                    WHERE face_identities.source IN {SYSTEM_SOURCES_SQL}"""),
                    {"faces": faces, "people": people, "sources": sources},
                )
            self._drop_empty_unnamed(conn)
        return created

    def resolve(self, person: str | int) -> tuple[int, str | None]:
        """A person by id (a number, or '#12') or by exact name."""
        from ..errors import NotFound

        key = str(person).strip()
        with self.engine.connect() as conn:
            row = None
            if key.lstrip("#").isdigit():
                row = conn.execute(
                    text("SELECT id, name FROM identities WHERE id = :id"), {"id": int(key.lstrip("#"))}
                ).first()
            if row is None:
                row = conn.execute(text("SELECT id, name FROM identities WHERE name = :name"), {"name": key}).first()
        if row is None:
            raise NotFound(f"no person {key!r} (give an id from `facedb people` or an exact name)")
        return row.id, row.name

    # ---- the people lists: stored summaries (migration 0011) ------------------------------
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
        (within SAME_FACE_DISTANCE, as clustering's copies). Embeddings are read only for such pairs."""
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
                    and float(np.linalg.norm(vectors[members[a][0]] - vectors[members[b][0]])) <= SAME_FACE_DISTANCE
                ),
            )
            for person, members in faces.items()
        }

    def person_faces(self, identity_id: int) -> list[PersonFace]:
        with self.reads.connect() as conn:
            rows = conn.execute(
                text("""
                SELECT f.id, f.photo_id, p.path, f.box_x, f.box_y, f.box_w, f.box_h, fi.source,
                       halfvec_send(e.embedding) AS raw, p.taken_at
                FROM face_identities fi JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id
                LEFT JOIN face_embeddings e ON e.face_id = f.id AND e.model = :model
                WHERE fi.identity_id = :id ORDER BY f.id"""),
                {"id": identity_id, "model": self.model},
            ).all()
        return [
            PersonFace(
                r.id,
                r.photo_id,
                r.path,
                (r.box_x, r.box_y, r.box_w, r.box_h),
                r.source,
                None if r.raw is None else decode_halfvec_send(r.raw),
                r.taken_at,
            )
            for r in rows
        ]

    def is_hidden(self, identity_id: int) -> bool:
        with self.engine.connect() as conn:
            return bool(
                conn.execute(text("SELECT hidden FROM identities WHERE id = :id"), {"id": identity_id}).scalar()
            )

    def set_hidden(self, identity_id: int, hidden: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE identities SET hidden = :h WHERE id = :id"), {"h": hidden, "id": identity_id})

    def faces(
        self,
        *,
        identity_id: int | None = None,
        unassigned: bool = False,
        photo_ids: Sequence[int] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[ListedFace]]:
        """Faces with their photo and person, by face id: a person's, those of nobody, or those
        of some photos (each filter optional, all that are given apply); and how many match."""
        where = ["true"]
        params: dict[str, object] = {"limit": limit, "offset": offset}
        if identity_id is not None:
            where.append("fi.identity_id = :identity_id")
            params["identity_id"] = identity_id
        if unassigned:
            where.append("fi.identity_id IS NULL")
        if photo_ids is not None:
            where.append("f.photo_id = ANY(:photo_ids)")
            params["photo_ids"] = list(photo_ids)
        condition = " AND ".join(where)  # the fixed clauses above; the values are parameters
        joined = """faces f JOIN photos p ON p.id = f.photo_id
                    LEFT JOIN face_identities fi ON fi.face_id = f.id
                    LEFT JOIN identities i ON i.id = fi.identity_id"""
        if unassigned and identity_id is None and photo_ids is None:
            counts = self.store.counts()  # stored: counting them all takes seconds at ten million faces
            total = counts["faces"] - counts["assigned_faces"]
        else:
            total = None
        with self.reads.connect() as conn:
            if total is None:
                total = conn.execute(text(f"SELECT count(*) FROM {joined} WHERE {condition}"), params).scalar_one()
            rows = (
                []
                if total == 0
                else conn.execute(
                    text(f"""
                SELECT f.id AS face_id, f.photo_id, p.path AS photo, f.box_x, f.box_y, f.box_w, f.box_h, f.score,
                       fi.identity_id AS person_id, i.name, fi.source
                FROM {joined} WHERE {condition} ORDER BY f.id LIMIT :limit OFFSET :offset"""),
                    params,
                ).all()
            )
        return total, [
            ListedFace(
                face_id=r.face_id,
                photo_id=r.photo_id,
                photo=r.photo,
                box=(r.box_x, r.box_y, r.box_w, r.box_h),
                score=r.score,
                person_id=r.person_id,
                name=r.name,
                source=r.source,
            )
            for r in rows
        ]

    def named_faces(self, prefixes: Sequence[str] = ()) -> list[tuple[int, str, int, int, list[tuple[str, Box]]]]:
        """The indexed photos (under `prefixes`: files, or folders) with named faces: photo id,
        path, width and height as shown, and each named face's (name, box)."""
        scope = (
            " AND (p.path = ANY(:prefixes) OR EXISTS (SELECT 1 FROM unnest(CAST(:dirs AS text[])) AS d "
            "WHERE starts_with(p.path, d)))"
            if prefixes
            else ""
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"""
                SELECT p.id, p.path, p.width, p.height, i.name, f.box_x, f.box_y, f.box_w, f.box_h
                FROM faces f JOIN photos p ON p.id = f.photo_id
                JOIN face_identities fi ON fi.face_id = f.id JOIN identities i ON i.id = fi.identity_id
                WHERE i.name IS NOT NULL AND p.status = 'indexed' {scope}
                ORDER BY p.id, f.id"""),
                {"prefixes": list(prefixes), "dirs": [p.rstrip("/") + "/" for p in prefixes]},
            ).all()
        photos: dict[int, tuple[int, str, int, int, list[tuple[str, Box]]]] = {}
        for r in rows:
            entry = photos.setdefault(r.id, (r.id, r.path, r.width, r.height, []))
            entry[4].append((r.name, (r.box_x, r.box_y, r.box_w, r.box_h)))
        return list(photos.values())

    def face_exists(self, face_id: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM faces WHERE id = :id"), {"id": face_id}).first() is not None

    def rename(self, identity_id: int, name: str) -> None:
        """Naming is a person's decision: the faces clustered into it count as confirmed."""
        from ..errors import FaceDBError

        with self.engine.begin() as conn:
            taken = conn.execute(
                text("SELECT id FROM identities WHERE name = :name AND id <> :id"), {"name": name, "id": identity_id}
            ).scalar()
            if taken is not None:
                raise FaceDBError(
                    f"the name {name!r} belongs to person #{taken} already; "
                    f"use `facedb merge {taken} {identity_id}` to make them one"
                )
            conn.execute(text("UPDATE identities SET name = :name WHERE id = :id"), {"name": name, "id": identity_id})
            conn.execute(
                text(
                    "UPDATE face_identities SET source = 'confirmed', assigned_at = now() "
                    "WHERE identity_id = :id AND source = 'clustered'"
                ),
                {"id": identity_id},
            )

    def merge(self, keep: int, other: int) -> int:
        """other's faces go to keep (as they were assigned); other's rejections too; other goes."""
        with self.engine.begin() as conn:
            moved = conn.execute(
                text("UPDATE face_identities SET identity_id = :keep WHERE identity_id = :other"),
                {"keep": keep, "other": other},
            ).rowcount
            conn.execute(
                text("""
                INSERT INTO face_rejections (face_id, identity_id)
                SELECT face_id, :keep FROM face_rejections WHERE identity_id = :other ON CONFLICT DO NOTHING"""),
                {"keep": keep, "other": other},
            )
            # a face rejected from either cannot stay in the merged person
            conn.execute(
                text("""
                DELETE FROM face_identities fi USING face_rejections r
                WHERE fi.face_id = r.face_id AND r.identity_id = :keep AND fi.identity_id = :keep
                AND fi.source IN ('proposed', 'clustered')"""),
                {"keep": keep},
            )
            conn.execute(text("DELETE FROM identities WHERE id = :other"), {"other": other})
        return moved

    def move(self, face_id: int, identity_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("DELETE FROM face_rejections WHERE face_id = :f AND identity_id = :i"),
                {"f": face_id, "i": identity_id},
            )
            conn.execute(
                text("""
                INSERT INTO face_identities (face_id, identity_id, source) VALUES (:f, :i, 'confirmed')
                ON CONFLICT (face_id) DO UPDATE SET identity_id = :i, source = 'confirmed', assigned_at = now()"""),
                {"f": face_id, "i": identity_id},
            )
            self._drop_empty_unnamed(conn)

    def reject(self, face_id: int, identity_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO face_rejections (face_id, identity_id) VALUES (:f, :i) ON CONFLICT DO NOTHING"),
                {"f": face_id, "i": identity_id},
            )
            conn.execute(
                text("DELETE FROM face_identities WHERE face_id = :f AND identity_id = :i"),
                {"f": face_id, "i": identity_id},
            )
            self._drop_empty_unnamed(conn)

    def confirm(self, identity_id: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                text(
                    "UPDATE face_identities SET source = 'confirmed', assigned_at = now() "
                    "WHERE identity_id = :id AND source IN ('proposed', 'clustered')"
                ),
                {"id": identity_id},
            ).rowcount

    def split_off(self, identity_id: int, face_ids: Sequence[int]) -> int:
        """Move these faces of a person into a new unnamed person (keeping how they were assigned)."""
        with self.engine.begin() as conn:
            new = conn.execute(text("INSERT INTO identities (name) VALUES (NULL) RETURNING id")).scalar_one()
            conn.execute(
                text(
                    "UPDATE face_identities SET identity_id = :new WHERE identity_id = :old AND face_id = ANY(:faces)"
                ),
                {"new": new, "old": identity_id, "faces": list(face_ids)},
            )
        return new

    def forget(self, identity_id: int, with_photos: bool) -> tuple[int, int]:
        """Remove the person, every face (embedding, thumbnail) and assignment derived from them,
        and with_photos also the photos they appear in. Returns what was removed."""
        with self.engine.begin() as conn:
            photo_ids = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT DISTINCT f.photo_id FROM faces f JOIN face_identities fi ON fi.face_id = f.id "
                        "WHERE fi.identity_id = :id"
                    ),
                    {"id": identity_id},
                )
            ]
            faces = conn.execute(
                text("DELETE FROM faces f USING face_identities fi WHERE fi.face_id = f.id AND fi.identity_id = :id"),
                {"id": identity_id},
            ).rowcount
            conn.execute(text("DELETE FROM identities WHERE id = :id"), {"id": identity_id})
            photos = 0
            if with_photos:
                photos = conn.execute(text("DELETE FROM photos WHERE id = ANY(:ids)"), {"ids": photo_ids}).rowcount
            else:
                conn.execute(
                    text(
                        "UPDATE photos p SET face_count = (SELECT count(*) FROM faces f WHERE f.photo_id = p.id) "
                        "WHERE p.id = ANY(:ids)"
                    ),
                    {"ids": photo_ids},
                )
            self._drop_empty_unnamed(conn)
        return faces, photos

    @staticmethod
    def _drop_empty_unnamed(conn: Connection) -> None:
        conn.execute(
            text("""
            DELETE FROM identities i WHERE i.name IS NULL
            AND NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.identity_id = i.id)""")
        )
