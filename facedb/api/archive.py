"""FaceDB's archive facet: dedup reports, backups, the schema, integrity checks and the counts
of `status`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..db.dedup import DedupStore
from ..db.integrity import IntegrityStore
from ..dedup.tiers import DedupThresholds
from ..people.plan import plan_clustering
from ..results import CheckResult, IdentityCount, ReplicaStatus, SchemaRevision, Status, StoredFailure
from ..vision.weights import embedder_specs
from .dedup_report import dedup_report
from .people import People


class Archive(People):
    def dedup(
        self,
        paths: Sequence[str | os.PathLike] = (),
        *,
        thresholds: DedupThresholds | None = None,
        tiers: tuple[int, ...] = (1, 2, 3, 4, 5),
        on_progress: Callable[[str], None] | None = None,
    ) -> dict:
        """The dedup report (see facedb.dedup.tiers): groups in tiers, each with a photo to keep and why.
        Nothing is deleted. `paths` limits it to photos under those files or folders."""
        prefixes = [os.path.abspath(os.fspath(p)) for p in paths]
        return dedup_report(
            DedupStore(self.store, self.model, self.embedder.dimension),
            prefixes,
            thresholds or self.dedup_thresholds(),
            tiers,
            identity_threshold=self.threshold().value,
            same_person=self._same_person_pairs,
            max_pixels=self.settings.max_pixels,
            read_workers=self.settings.read_workers,
            say=on_progress or (lambda message: None),
        )

    def dedup_thresholds(self) -> DedupThresholds:
        """Dedup's thresholds, their face distances those of the model in use."""
        return DedupThresholds.for_model(self.model)

    def _same_person_pairs(self) -> list[dict]:
        """Dedup's tier 5: the people `cluster` suggests merging (faces within the who
        threshold, never from one photo or copies of one), with each one's face count."""
        plan = plan_clustering(
            self.people_store.cluster_inputs(), self.cluster_params(), merge_within=self.threshold().value
        )
        counts = {p.id: p.faces for p in self.people(include_hidden=True)}
        return [
            {
                "people": [
                    {"id": person, "name": name, "faces": counts.get(person, 0)}
                    for person, name in zip(s.people, s.names)
                ],
                "closest_distance": round(s.distance, 4),
                "closest_faces": list(s.faces),
                "face_pairs_within_threshold": s.face_pairs,
            }
            for s in plan.merge_suggestions
        ]

    def photo_path(self, photo_id: int) -> str | None:
        return self.store.photo_path(photo_id)

    def dedup_face_thumbnails(self, face_ids: list[int]) -> dict[int, bytes]:
        return DedupStore(self.store, self.model, self.embedder.dimension).thumbnails(face_ids)

    def face_thumbnail(self, face_id: int) -> tuple[bytes, str] | None:
        """A face's thumbnail (WebP; JPEG if stored before December 2026) and the path of the photo it was cut from."""
        return self.store.face_thumbnail(face_id)

    def export(self, path: str | os.PathLike) -> dict:
        """Everything (photos, faces, embeddings, people, decisions) to a versioned file (see db/backup.py)."""
        from ..db import backup

        return backup.export(self.store, Path(path))

    def import_(self, path: str | os.PathLike) -> dict:
        from ..db import restore

        return restore.import_(self.store, Path(path))

    def schema_revision(self) -> SchemaRevision:
        """The database (described, password hidden), its schema revision and the newest one."""
        db = self.database
        return SchemaRevision(database=db.describe(), current=db.current_revision(), newest=db.head_revision())

    def upgrade_schema(self, revision: str = "head") -> SchemaRevision:
        self.database.upgrade(revision)
        return self.schema_revision()

    def check(self, *, fix: bool = False, on_progress: Callable[[str], None] | None = None) -> CheckResult:
        """What is wrong with the store (nothing changes), and with fix=True the safe repairs
        (`on_progress` hears how a search index build goes)."""
        integrity = IntegrityStore(
            self.store,
            {key: int(spec["dimension"]) for key, spec in embedder_specs().items()},
            self.settings.search_index,
            on_progress,
        )
        problems = integrity.problems()
        result = CheckResult(problems={k: v for k, v in problems.items() if v})
        if fix and result.problems:
            result.repaired = integrity.repair(problems)
            result.after = {k: v for k, v in integrity.problems().items() if v}
        schema = self.database.current_revision(), self.database.head_revision()
        if schema[0] != schema[1]:
            result.problems["schema_revision"] = [f"{schema[0]} (newest {schema[1]})"]
        return result

    def database_answers(self) -> bool:
        return self.store.answers()

    def status(self, *, with_failures: bool = False) -> Status:
        """Counts of photos, faces and identities, the threshold in force, and (with_failures)
        every file that failed with its reason."""
        return Status(
            database=self.database.describe(),
            **self.store.counts(),
            model=self.model,
            threshold=self.threshold(),
            failures=self.failures() if with_failures else None,
            replicas=[ReplicaStatus(**r) for r in self.database.reads.status()],
        )

    def failures(self) -> list[StoredFailure]:
        return [StoredFailure(path=p, reason=r, when=t) for p, r, t in self.store.failures()]

    def identities(self) -> list[IdentityCount]:
        return [IdentityCount(id=i, name=n, faces=c) for i, n, c in self.store.identities()]
