"""FaceDB's people facet: clustering, the people lists, and what a person can be told (name,
merge, move, reject, confirm, hide, split, forget)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import FaceDBError, NotFound
from ..names import person_name
from ..people.clustering import ClusterParams
from ..people.plan import plan_clustering, plan_new_faces, split_faces
from ..results import (
    ClusterResult,
    Confirmed,
    FaceListing,
    FaceOfPerson,
    Forgotten,
    HiddenChange,
    Merged,
    Moved,
    PersonDetail,
    PersonSummary,
    Rejected,
    Renamed,
    SplitPart,
    SplitResult,
)
from .parts import Parts

# From this many faces `cluster` looks only at the faces of nobody new since its last run (its
# full run's exact neighbour search takes 138 s at 100,000 faces and grows with their square).
INCREMENTAL_CLUSTER_FACES = 100_000


class People(Parts):
    def cluster_params(self) -> ClusterParams:
        """The clustering settings; proposals use the calibrated threshold unless one is set."""
        calibrated = None
        if self.settings.propose_threshold is None:
            threshold = self.threshold()
            calibrated = threshold.value if threshold.source == "calibrated" else None
        return ClusterParams.from_settings(self.settings, self.model, calibrated_who_threshold=calibrated)

    def cluster(
        self,
        *,
        dry_run: bool = False,
        params: ClusterParams | None = None,
        incremental: bool | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> ClusterResult:
        """Group faces nobody placed into people; see facedb.people.clustering for the rules. The full run
        looks at every face (its exact neighbour search grows with faces squared: 138 s at
        100,000); the incremental one only at the faces of nobody new since the last run, with
        their neighbours from the search index (facedb.people.plan.plan_new_faces). None: incremental
        from INCREMENTAL_CLUSTER_FACES faces on, once a run has been made."""
        people = self.people_store
        params = params or self.cluster_params()
        through = people.clustered_through()
        if incremental is None:
            incremental = through is not None and self.store.counts()["faces"] >= INCREMENTAL_CLUSTER_FACES
        if incremental:
            new = people.new_faces_of_nobody(after_face=through or 0)
            radius = max(params.eps, params.propose_threshold)
            edges = people.neighbours_through_index(new, params.k, radius, self.embedder.dimension, on_progress)
            plan = plan_new_faces(people.new_faces_inputs(new, edges), params)
            names = people.names_of(list(plan.joining))
            newest = max(new, default=through)
        else:
            inputs = people.cluster_inputs()
            plan = plan_clustering(inputs, params, merge_within=self.threshold().value, say=on_progress)
            names = inputs.names
            newest = int(inputs.face_ids.max()) if len(inputs.face_ids) else through
        result = plan.result(names, dry_run=dry_run)
        if not dry_run:
            created = people.apply_assignments(
                plan.leaving, plan.assignments, list(plan.new_people), clustered_through=newest
            )
            for entry, key in zip(result.new_people, plan.new_people):
                entry.person_id = created[key]
            people.summaries.summarise_changed(on_progress)
        return result

    def people(
        self,
        *,
        include_hidden: bool = False,
        within: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        on_progress: Callable[[str], None] | None = None,
    ) -> list[PersonSummary]:
        """People by their number of faces, `limit` of them (None: all) from `offset`.
        `within`: folders (path prefixes) the representative faces' photos must lie in (the
        service's: a face it may not show makes a poor representative); none where no face does.
        The summaries of people whose faces changed are made first (`on_progress` hears how far:
        a million people after a bulk load take minutes)."""
        if (limit is not None and limit < 1) or offset < 0:
            raise FaceDBError("limit must be at least 1 and offset at least 0")
        self.people_store.summaries.summarise_changed(on_progress)
        return self.people_store.summaries.people(
            include_hidden=include_hidden, within=within, limit=limit, offset=offset
        )

    def count_people(self, *, include_hidden: bool = False) -> int:
        return self.people_store.summaries.count_people(include_hidden=include_hidden)

    def hide(self, person: str | int, hidden: bool = True) -> HiddenChange:
        """Set a person aside (or show them again): a hidden person keeps their faces, so that
        clustering neither makes them again nor hands their faces to anyone else, and is
        left out of the people lists."""
        identity_id, name = self.people_store.resolve(person)
        self.people_store.set_hidden(identity_id, hidden)
        return HiddenChange(id=identity_id, name=name, hidden=hidden)

    def faces(
        self,
        *,
        person: str | int | None = None,
        unassigned: bool = False,
        photo: str | os.PathLike | None = None,
        photo_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        after: int | None = None,
    ) -> FaceListing:
        """Stored faces with their ids, photos and people: a person's, the faces of nobody, or
        a photo's, by path or id (the filters given all apply), a page of `limit` from `offset`,
        counted from the first face after face id `after` if given (the next page of a long
        list at the cost of the first: pass the last face id of a page)."""
        if person is not None and unassigned:
            raise FaceDBError("a face of nobody is in no person: give a person or unassigned, not both")
        if limit < 1 or offset < 0 or (after is not None and after < 0):
            raise FaceDBError("limit must be at least 1, offset and after at least 0")
        identity_id = self.people_store.resolve(person)[0] if person is not None else None
        photo_ids = None if photo_id is None else [photo_id]
        if photo is not None:
            path = os.path.abspath(os.fspath(photo))
            known = self.store.known_files([path]).get(path)
            if known is None:
                raise NotFound(f"{path} is not in the index")
            photo_ids = [known.id]
        total, listed = self.people_store.faces(
            identity_id=identity_id, unassigned=unassigned, photo_ids=photo_ids, limit=limit, offset=offset, after=after
        )
        return FaceListing(total=total, offset=offset, after=after, faces=listed)

    def person(self, person: str | int) -> PersonDetail:
        """A person and every face of theirs: photo, box, how assigned, distance to their centre."""
        identity_id, name = self.people_store.resolve(person)
        faces = self.people_store.person_faces(identity_id)
        vectors = [f.vector for f in faces if f.vector is not None]
        centre = np.mean(vectors, axis=0) if vectors else None
        shown = [
            FaceOfPerson(
                face_id=f.face_id,
                photo_id=f.photo_id,
                photo=f.path,
                taken_at=f.taken_at,
                box=f.box,
                source=f.source,
                distance_to_centre=(
                    None if f.vector is None or centre is None else float(np.linalg.norm(f.vector - centre))
                ),
            )
            for f in faces
        ]
        return PersonDetail(
            id=identity_id,
            name=name,
            hidden=self.people_store.is_hidden(identity_id),
            faces=sorted(shown, key=lambda f: (f.distance_to_centre is None, f.distance_to_centre or 0.0)),
        )

    def contact_sheet(self, person: str | int, out_path: str | os.PathLike) -> Path:
        """A sheet of the person's faces (nearest their centre first), each face's id and how it
        was assigned under it: to see who a cluster is without opening the photos."""
        from ..annotate import contact_sheet

        shown = self.person(person)
        faces = [(f.face_id, (self.store.face_thumbnail(f.face_id) or (None, ""))[0], f.source) for f in shown.faces]
        label = shown.name or f"person #{shown.id}"
        return contact_sheet(f"{label}: {len(faces)} faces", faces, Path(out_path))

    def name(self, person: str | int, name: str) -> Renamed:
        name = person_name(name)
        identity_id, _ = self.people_store.resolve(person)
        self.people_store.rename(identity_id, name)
        return Renamed(id=identity_id, name=name)

    def merge(self, keep: str | int, other: str | int) -> Merged:
        keep_id, keep_name = self.people_store.resolve(keep)
        other_id, other_name = self.people_store.resolve(other)
        if keep_id == other_id:
            raise FaceDBError("cannot merge a person with themselves")
        moved = self.people_store.merge(keep_id, other_id)
        if keep_name is None and other_name is not None:  # keep the only name there was
            self.people_store.rename(keep_id, other_name)
        return Merged(id=keep_id, merged=other_id, faces_moved=moved)

    def move(self, face_id: int, person: str | int) -> Moved:
        """Put a face in a person (a new name creates them); a person's decision, kept by clustering."""
        if not self.people_store.face_exists(face_id):
            raise NotFound(f"no face {face_id}")
        try:
            identity_id, _ = self.people_store.resolve(person)
        except NotFound:
            if str(person).lstrip("#").isdigit():
                raise
            identity_id = self.store.assign(person_name(str(person)), [], "confirmed")
        self.people_store.move(face_id, identity_id)
        return Moved(face_id=face_id, person_id=identity_id)

    def reject(self, face_id: int, person: str | int) -> Rejected:
        if not self.people_store.face_exists(face_id):
            raise NotFound(f"no face {face_id}")
        identity_id, _ = self.people_store.resolve(person)
        self.people_store.reject(face_id, identity_id)
        return Rejected(face_id=face_id, rejected_from=identity_id)

    def confirm(self, person: str | int) -> Confirmed:
        identity_id, _ = self.people_store.resolve(person)
        return Confirmed(id=identity_id, confirmed=self.people_store.confirm(identity_id))

    def split(self, person: str | int, *, eps: float | None = None, apply: bool = False) -> SplitResult:
        """Re-cluster one person's faces more tightly and offer the parts (apply: make them people)."""
        identity_id, name = self.people_store.resolve(person)
        base = self.cluster_params()
        params = ClusterParams(
            eps=eps if eps is not None else round(base.eps * 0.8, 3), min_samples=1, min_size=1, k=base.k
        )
        plan = split_faces(self.people_store.person_faces(identity_id), params, join_within=base.eps)
        parts = [SplitPart(faces=len(p), face_ids=p) for p in plan.parts]
        applied = apply and len(parts) > 1
        if applied:
            for part in parts[1:]:
                part.new_person_id = self.people_store.split_off(identity_id, part.face_ids)
        return SplitResult(
            id=identity_id,
            name=name,
            eps=params.eps,
            parts=parts,
            silhouette=plan.silhouette,
            spread_whole=plan.spread_whole,
            spread_parts=plan.spread_parts,
            verdict=plan.verdict,
            applied=applied,
        )

    def forget(self, person: str | int, *, photos: bool = False) -> Forgotten:
        identity_id, name = self.people_store.resolve(person)
        faces, photos_removed = self.people_store.forget(identity_id, photos)
        return Forgotten(id=identity_id, name=name, faces=faces, photos=photos_removed)
