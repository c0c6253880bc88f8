"""People: clustering's input and its changes, naming, merging, moving, rejecting, forgetting
(the people lists, from stored summaries, are summaries.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Connection, text

from ..faces import Box
from ..people.plan import ClusterInputs, NewFacesInputs, PersonFace
from ..results import ListedFace
from .codec import decode_halfvec_send
from .search_index import of_model, search_index, tune_search
from .sql import SYSTEM_SOURCES_SQL
from .store import Store
from .summaries import PersonSummaries


class PeopleStore:
    """Queries for people: clustering input and output, naming, merging, forgetting."""

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.engine = store.engine
        self.reads = store.reads  # listings may come from a replica
        self.model = model  # whose embeddings clustering, centres and copies are measured with
        self.summaries = PersonSummaries(store, model)  # the people lists

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
                    tune_search(conn, max(40, k * 4, index.candidates(k)))
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
        after: int | None = None,
    ) -> tuple[int, list[ListedFace]]:
        """Faces with their photo and person, by face id: a person's, those of nobody, or those
        of some photos (each filter optional, all that are given apply), from the face after
        `after` on if given; and how many match (`after` aside)."""
        where = ["true"]
        params: dict[str, object] = {"limit": limit, "offset": offset, "after": after or 0}
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
        order = "f.id"
        if unassigned and identity_id is None and photo_ids is None:
            counts = self.store.counts()  # stored: counting them all takes seconds at ten million faces
            total = counts["faces"] - counts["assigned_faces"]
            # the list of faces of nobody (migration 0014), not a walk of every face from the lowest id
            joined = """faces_of_nobody n JOIN faces f ON f.id = n.face_id JOIN photos p ON p.id = f.photo_id
                    LEFT JOIN face_identities fi ON fi.face_id = f.id
                    LEFT JOIN identities i ON i.id = fi.identity_id"""
            order = "n.face_id"
        else:
            total = None
        paged = " AND ".join([*where, f"{order} > :after"])
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
                FROM {joined} WHERE {paged} ORDER BY {order} LIMIT :limit OFFSET :offset"""),
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
