"""`facedb check`: what is wrong with the store, and the repairs that are safe."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from sqlalchemy import Connection, text

from . import search_index
from .sql import FAILED_SQL, INDEXED_SQL, embedding_index
from .store import Store

_FACES_OF_NOBODY = (
    "SELECT f.id AS face_id FROM faces f WHERE NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.face_id = f.id)"
)
_NOBODY_LIST_WRONG = f"""
    (({_FACES_OF_NOBODY}) EXCEPT SELECT face_id FROM faces_of_nobody)
    UNION ALL
    (SELECT face_id FROM faces_of_nobody EXCEPT ({_FACES_OF_NOBODY}))"""


class IntegrityStore:
    """`facedb check`: what is wrong with the store, and the repairs that are safe."""

    def __init__(
        self,
        store: Store,
        models: dict[str, int],
        search_index_setting: str = "auto",
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.models = models  # model key -> dimension: each has its search index
        self.search_index_setting = search_index_setting  # FACEDB_SEARCH_INDEX
        self.say = say  # progress of long repairs (an index build)

    def problems(self) -> dict[str, list]:
        with self.engine.connect() as conn:
            found = {
                "faces_without_photo": [
                    r[0]
                    for r in conn.execute(
                        text("SELECT f.id FROM faces f LEFT JOIN photos p ON p.id = f.photo_id WHERE p.id IS NULL")
                    )
                ],
                "wrong_dimension": [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT e.face_id FROM face_embeddings e JOIN embedding_models m "
                            "ON m.id = e.embedding_model_id WHERE vector_dims(e.embedding) <> m.dimension "
                            "OR e.model <> m.version ORDER BY e.face_id"
                        )
                    )
                ],
                # FaceNet embeddings are unit length; anything else was not made by it (or is damaged)
                "not_unit_length": [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT DISTINCT face_id FROM face_embeddings "
                            "WHERE abs(l2_norm(embedding) - 1) > 0.01 ORDER BY face_id"
                        )
                    )
                ],
                "wrong_face_count": [
                    tuple(r)
                    for r in conn.execute(
                        text("""
                    SELECT p.id, p.face_count, count(f.id) FROM photos p LEFT JOIN faces f ON f.photo_id = p.id
                    GROUP BY p.id HAVING p.face_count <> count(f.id) ORDER BY p.id""")
                    )
                ],
                "faces_of_failed_photos": [
                    r[0]
                    for r in conn.execute(
                        text(
                            f"SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.status = {FAILED_SQL}"
                        )
                    )
                ],
                "empty_unnamed_people": [
                    r[0]
                    for r in conn.execute(
                        text("""
                    SELECT i.id FROM identities i WHERE i.name IS NULL
                    AND NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.identity_id = i.id)""")
                    )
                ],
                "invalid_indexes": [
                    r[0]
                    for r in conn.execute(
                        text("""
                    SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                    JOIN pg_class t ON t.oid = x.indrelid
                    WHERE t.relname IN ('photos', 'faces', 'face_embeddings', 'identities', 'face_identities',
                                        'face_rejections')
                    AND NOT (x.indisvalid AND x.indisready)
                    AND c.relname NOT LIKE '%\\_building'""")
                    )
                ],
            }
            found["missing_embedding_index"] = []
            found["wrong_embedding_index"] = []
            found["search_index_kind"] = []
            for model, dimension in self.models.items():
                definition = search_index.definition(conn, model)
                if definition is None:
                    found["missing_embedding_index"].append(embedding_index(model))
                    continue
                have = search_index.kind_of(definition)
                # an index of the same name on another expression leaves every search a sequential scan
                if not all(part in definition for part in search_index.parts(model, dimension, have)):
                    found["wrong_embedding_index"].append(definition)
                    continue
                faces = self._faces_of(conn, model)
                want = search_index.kind_wanted(self.search_index_setting, faces)
                if have != want:
                    found["search_index_kind"].append(
                        f"{embedding_index(model)}: {have}, FACEDB_SEARCH_INDEX={self.search_index_setting} "
                        f"chooses {want} for {faces:,} faces"
                    )
            paths = conn.execute(text(f"SELECT id, path FROM photos WHERE status = {INDEXED_SQL} ORDER BY id")).all()
        found["missing_files"] = [(r.id, r.path) for r in paths if not os.path.lexists(r.path)]
        with self.engine.connect() as conn:
            # faces of nobody missing from their list or listed while in a person (migration 0014)
            found["faces_of_nobody_list"] = [
                r[0] for r in conn.execute(text(f"SELECT face_id FROM ({_NOBODY_LIST_WRONG}) w ORDER BY 1 LIMIT 1000"))
            ]
        stored, counted = self.store.stored_counts(), self.store.counted()
        found["wrong_counts"] = [
            f"{name}: {stored.get(name, 0):,} stored, {counted.get(name, 0):,} counted"
            for name in sorted(stored.keys() | counted.keys())
            if stored.get(name, 0) != counted.get(name, 0)
        ]
        return found

    @staticmethod
    def _faces_of(conn: Connection, model: str) -> int:
        # through ix_face_embeddings_model: an index-only scan, no embedding read
        return conn.execute(
            text("SELECT count(*) FROM face_embeddings WHERE model = :model"), {"model": model}
        ).scalar_one()

    def repair(self, problems: dict[str, list]) -> dict[str, int]:
        """Only what cannot lose anything: recount faces, drop faces of failed photos and empty
        unnamed people, rebuild invalid or missing indexes. Missing files are only reported."""
        done = {}
        with self.engine.begin() as conn:
            if problems["faces_of_failed_photos"]:
                done["faces_of_failed_photos"] = conn.execute(
                    text("DELETE FROM faces WHERE id = ANY(:ids)"), {"ids": problems["faces_of_failed_photos"]}
                ).rowcount
            if problems["wrong_face_count"] or problems["faces_of_failed_photos"]:
                done["wrong_face_count"] = conn.execute(
                    text("""
                    UPDATE photos p SET face_count = c.n FROM (
                        SELECT p2.id, count(f.id) AS n FROM photos p2 LEFT JOIN faces f ON f.photo_id = p2.id
                        GROUP BY p2.id) c
                    WHERE c.id = p.id AND p.face_count <> c.n""")
                ).rowcount
            if problems["empty_unnamed_people"]:
                done["empty_unnamed_people"] = conn.execute(
                    text("DELETE FROM identities WHERE id = ANY(:ids)"), {"ids": problems["empty_unnamed_people"]}
                ).rowcount
        # missing: the index names; wrong: their definitions, "CREATE INDEX <name> ON ..."; kind: "<name>: ..."
        rebuild = set(problems.get("missing_embedding_index", []))
        rebuild |= {
            found.group(1)
            for definition in problems.get("wrong_embedding_index", [])
            if (found := re.search(r"INDEX (\S+) ON", definition))
        }
        rebuild |= {line.split(":")[0] for line in problems.get("search_index_kind", [])}
        for model, dimension in self.models.items():
            if embedding_index(model) in rebuild:
                with self.engine.connect() as conn:
                    faces = self._faces_of(conn, model)
                kind = search_index.kind_wanted(self.search_index_setting, faces)
                search_index.build(self.engine, model, dimension, kind, faces, self.say)
        for kind in ("missing_embedding_index", "wrong_embedding_index", "search_index_kind"):
            if problems.get(kind):
                done[kind] = len(problems[kind])
        if problems.get("wrong_counts"):
            self.store.recount()
            done["wrong_counts"] = len(problems["wrong_counts"])
        if problems.get("faces_of_nobody_list"):
            with self.engine.begin() as conn:
                conn.execute(text("LOCK TABLE faces, face_identities IN SHARE MODE"))
                conn.execute(text("DELETE FROM faces_of_nobody"))
                conn.execute(text(f"INSERT INTO faces_of_nobody (face_id) {_FACES_OF_NOBODY}"))
            done["faces_of_nobody_list"] = len(problems["faces_of_nobody_list"])
        for name in problems["invalid_indexes"]:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'REINDEX INDEX "{name}"'))  # a name read from pg_class, not from a user
            done["invalid_indexes"] = done.get("invalid_indexes", 0) + 1
        return done
