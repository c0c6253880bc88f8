"""FaceDB: the one domain API under the CLI, the REST service and the tests."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import Settings
from .db.apikeys import ApiKeys
from .db.calibrations import CalibrationStore
from .db.database import Database
from .db.dedup import DedupStore
from .db.embeddings import EmbeddingStore
from .db.integrity import IntegrityStore
from .db.people import PeopleStore
from .db.store import Store
from .dedup.report import dedup_report
from .dedup.tiers import DedupThresholds
from .errors import FaceDBError, ImageError, NotFound, TooLarge
from .faces import Detection, Face, box_iou, main_face
from .files.images import decode, pixel_count, read_file
from .files.scan import scan
from .ingest.analysis import FaceExtractor
from .ingest.pipeline import FailureCallback, Indexer, ProgressCallback
from .names import person_name
from .people.clustering import ClusterParams
from .people.plan import plan_clustering, plan_new_faces, split_faces
from .proof.calibrate import METHOD as CALIBRATION_METHOD
from .records import StoredFace
from .results import (
    CalibrationResult,
    CheckResult,
    ClusterResult,
    CompareAnswer,
    ComparedFace,
    Confirmed,
    DefaultModel,
    EnrollResult,
    FaceAnswer,
    FaceListing,
    FaceOfPerson,
    FileFailure,
    FileWarning,
    Forgotten,
    HiddenChange,
    IdentityCount,
    IdentityMatch,
    IndexSummary,
    Merged,
    ModelInfo,
    Moved,
    PersonDetail,
    PersonSummary,
    PhotoError,
    PhotoFaces,
    ReembedSummary,
    Rejected,
    Renamed,
    ReplicaStatus,
    SchemaRevision,
    SplitPart,
    SplitResult,
    Status,
    StoredFailure,
    TagsWritten,
    ThresholdInForce,
    WhoAnswer,
)
from .vision.detect import Detector, MtcnnDetector
from .vision.embed import Embedder, FacenetEmbedder
from .vision.weights import default_embedder, embedder_spec, embedder_specs, weights_path

if TYPE_CHECKING:
    from .ingest.distributed import RayAnalysis

# From this many faces `cluster` looks only at the faces of nobody new since its last run (its
# full run's exact neighbour search takes 138 s at 100,000 faces and grows with their square).
INCREMENTAL_CLUSTER_FACES = 100_000


class FaceDB:
    """Open lazily: nothing heavy (database, TensorFlow) happens until a method needs it."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        detector: Detector | None = None,
        embedder: Embedder | None = None,
        embedders: Sequence[Embedder] = (),
    ) -> None:
        self.settings = settings or Settings.load()
        self._database: Database | None = None
        self._store: Store | None = None
        self._detector = detector
        # loaded models by the manifest's key; others are made from the settings when needed
        self._embedders: dict[str, Embedder] = {e.model: e for e in [*embedders, *([embedder] if embedder else [])]}
        self._embedding_model_ids: dict[str, int] = {}
        self._model: str | None = None

    # ---- parts, created on first use ------------------------------------------------------
    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = Database.open(self.settings)
        return self._database

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.database)
        return self._store

    @property
    def api_keys(self) -> ApiKeys:
        """The REST service's keys: create (shown once), list, revoke, check."""
        return ApiKeys(self.database.engine)

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = MtcnnDetector.from_settings(self.settings)
        return self._detector

    @property
    def model(self) -> str:
        """The embedding model this FaceDB uses: the setting (--model, FACEDB_MODEL), else the
        database's default (`facedb models default`). A database that does not exist yet is
        not created to ask: it would start with the manifest's default. (So `compare` opens the
        database when there is one; --model spares it that.)"""
        if self._model is None:
            chosen = self.settings.model
            exists = self._database is not None or self.settings.database_url or self.settings.pgdata.exists()
            if chosen is None and exists:
                chosen = self.default_model
            self._model = embedder_spec(chosen or default_embedder())["key"]
        return self._model

    @property
    def default_model(self) -> str:
        """The database's default model (`facedb models default`)."""
        return EmbeddingStore(self.store).default_model() or default_embedder()

    def embedder_of(self, model: str) -> Embedder:
        if model not in self._embedders:
            self._embedders[model] = FacenetEmbedder.from_settings(self.settings, model=embedder_spec(model)["key"])
        return self._embedders[model]

    @property
    def embedder(self) -> Embedder:
        return self.embedder_of(self.model)

    @property
    def preprocessing(self) -> str:
        return self.embedder.preprocessing(self.settings.face_margin)

    def embedding_model_id_of(self, model: str) -> int:
        if model not in self._embedding_model_ids:
            e = self.embedder_of(model)
            self._embedding_model_ids[model] = self.store.embedding_model_id(
                e.name, e.version, e.sha256, e.preprocessing(self.settings.face_margin), e.dimension, e.runtime
            )
        return self._embedding_model_ids[model]

    @property
    def embedding_model_id(self) -> int:
        return self.embedding_model_id_of(self.model)

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None
            self._store = None

    def __enter__(self) -> FaceDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def extractor(self) -> FaceExtractor:
        return FaceExtractor(self.detector, self.embedder, self.settings.face_margin)

    def _indexer(self, read_face_tags: bool | None = None, remote: RayAnalysis | None = None) -> Indexer:
        s = self.settings
        return Indexer(
            self.store,
            self.extractor,
            self.embedding_model_id,
            self.model,
            max_pixels=s.max_pixels,
            max_decoded_pixels=s.max_decoded_pixels,
            batch_photos=s.write_batch_photos,
            read_workers=s.read_workers,
            detect_workers=s.detect_workers,
            read_face_tags=s.read_face_tags if read_face_tags is None else read_face_tags,
            remote=remote,
        )

    # ---- faces of photos that are not stored ---------------------------------------------
    def faces_in(self, paths: Sequence[str | os.PathLike], keep_pixels: bool = False) -> list[PhotoFaces]:
        """Detect, align and embed every face of each photo, without storing anything."""

        def files():
            for item in scan(paths):
                if item.error:
                    yield item.path, None, item.error
                    continue
                try:
                    yield item.path, read_file(Path(item.path))[0], None
                except ImageError as exc:
                    yield item.path, None, str(exc)

        return self._faces_of(files(), keep_pixels)

    def faces_in_uploads(
        self, uploads: list[tuple[str, bytes]], *, max_total_pixels: int | None = None
    ) -> list[PhotoFaces]:
        """Like faces_in, for images given as bytes (name, data): an upload that is not an image
        comes back with its error. `max_total_pixels` bounds the work of one request (each
        image is also bounded by FACEDB_MAX_PIXELS): read from the headers, before decoding."""
        if max_total_pixels is not None:
            total = sum(pixel_count(data) or 0 for _, data in uploads)
            if total > max_total_pixels:
                raise TooLarge(
                    f"these images hold {total:,} pixels together; one request may hold at most "
                    f"{max_total_pixels:,} (FACEDB_MAX_REQUEST_PIXELS)"
                )
        sources = ((name, data, None if data else "empty file (0 bytes)") for name, data in uploads)
        return self._faces_of(sources, keep_pixels=False)

    def _faces_of(self, sources, keep_pixels: bool) -> list[PhotoFaces]:
        """(name, bytes or None, error or None) -> faces, embedded together in batches."""
        extractor = self.extractor
        results = []
        for name, data, error in sources:
            if error is None:
                try:
                    photo = decode(data, self.settings.max_pixels, self.settings.max_decoded_pixels)
                except ImageError as exc:
                    error = str(exc)
            if error is not None:
                results.append(PhotoFaces(name, [], error=error))
                continue
            results.append(
                PhotoFaces(
                    name,
                    extractor.faces_in(photo),
                    photo if keep_pixels else None,
                    content_hash=hashlib.sha256(data).hexdigest(),
                )
            )
        extractor.embed([face for result in results for face in result.faces])
        return results

    def compare(self, paths: Sequence[str | os.PathLike]) -> CompareAnswer:
        """The FaceNet tutorial's compare: Euclidean distances between all faces of the photos."""
        return self.compare_faces(self.faces_in(paths))

    def compare_faces(self, results: list[PhotoFaces]) -> CompareAnswer:
        faces = [(r.path, i, f) for r in results for i, f in enumerate(r.faces)]
        vectors = np.stack([f.vector for _, _, f in faces]) if faces else np.zeros((0, 0), np.float32)
        distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1) if faces else np.zeros((0, 0))
        return CompareAnswer(
            faces=[ComparedFace(photo=p, face=i, box=f.box, score=f.detection.score) for p, i, f in faces],
            distances=distances.tolist(),
            errors=[PhotoError(photo=r.path, error=r.error) for r in results if r.error],
            photos_without_faces=[r.path for r in results if not r.error and not r.faces],
        )

    # ---- indexing -----------------------------------------------------------------------
    def index(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        retry_failed: bool = False,
        on_progress: ProgressCallback | None = None,
        on_failure: FailureCallback | None = None,
        on_warning: FailureCallback | None = None,
        within: Sequence[str | os.PathLike] | None = None,
        read_face_tags: bool | None = None,
        ray: str | None = None,
    ) -> IndexSummary:
        """Index files and folders. A path that does not exist is a mistake in the command, not a
        photo that failed: nothing is indexed and nothing recorded. With `within` (the service's
        roots), files and links that lead outside those folders are recorded as failed, unread.
        With `ray` (or FACEDB_RAY_ADDRESS: "local", "auto" or the head's host:port) the model
        work runs on a Ray cluster (facedb.ingest.distributed); the result is the same."""
        missing = [os.fspath(p) for p in paths if not os.path.lexists(p)]
        if missing:
            raise FaceDBError(
                f"{missing[0]}: no such file or folder"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        roots = None if within is None else [Path(os.path.realpath(root)) for root in within]
        started = time.monotonic()
        address = ray or self.settings.ray_address
        remote = None
        if address:
            from .ingest.distributed import RayAnalysis, connect

            connect(address)  # before any work: a missing Ray or an unreachable cluster is one line
            remote = RayAnalysis(self.settings, self.model, address, self.settings.ray_actors)
        try:
            summary = self._indexer(read_face_tags, remote).run(
                paths,
                retry_failed=retry_failed,
                on_progress=on_progress,
                on_failure=on_failure,
                on_warning=on_warning,
                within=roots,
            )
        finally:
            if remote is not None:
                remote.close()
        if remote is not None:
            summary.ray_workers = sorted(remote.workers)
            summary.retried_chunks = remote.retried_chunks
        summary.wall_seconds = time.monotonic() - started
        return summary

    def enroll(
        self, name: str, paths: Sequence[str | os.PathLike], *, on_failure: FailureCallback | None = None
    ) -> EnrollResult:
        """Add the face of each photo to the identity `name` (created if new): its only face, or
        the one FaceNet's alignment takes (faces.main_face: the largest, near the middle)."""
        name = person_name(name)
        summary = self.index(paths, on_failure=on_failure)
        result = EnrollResult(name=name, failures=list(summary.failures))
        failed_now = {failure.path for failure in summary.failures}
        failed_before = self.store.failure_reasons(list(summary.photo_ids.values()))
        chosen = []
        for path, photo_id in sorted(summary.photo_ids.items()):
            if path in failed_now:
                continue  # reported once, with its reason
            if photo_id in failed_before:  # failed in an earlier run and unchanged since
                result.failures.append(FileFailure(path=path, reason=failed_before[photo_id]))
                if on_failure:
                    on_failure(path, failed_before[photo_id])
                continue
            faces = self.store.faces_of_photo(photo_id)
            if not faces:
                result.failures.append(FileFailure(path=path, reason="no face found"))
                continue
            main = main_face(faces, *self.store.photo_size(photo_id))
            assert main is not None
            if len(faces) > 1:
                result.warnings.append(
                    FileWarning(
                        path=path,
                        message=f"{len(faces)} faces in the photo; enrolled the largest near the middle, "
                        f"at {', '.join(str(round(v)) for v in main.box)}",
                    )
                )
            chosen.append(main.id)
            result.enrolled.append(path)
        if chosen:
            result.identity_id = self.store.assign(name, chosen, "enrolled")
        return result

    def enroll_from_folders(self, root: str | os.PathLike, **kwargs) -> list[EnrollResult]:
        """root/<person>/<photos>: the layout of LFW and most face datasets."""
        root = Path(root)
        if not root.is_dir():
            raise FaceDBError(f"{root}: not a folder")
        people = sorted(p for p in root.iterdir() if p.is_dir())
        return [self.enroll(person.name, [person], **kwargs) for person in people]

    # ---- who is this --------------------------------------------------------------------
    def who(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        top_k: int = 3,
        threshold: float | None = None,
        annotate_into: str | os.PathLike | None = None,
    ) -> list[WhoAnswer]:
        """Who is in each photo; with `annotate_into`, a copy of each photo with its faces boxed
        and named is written into that folder (`WhoAnswer.annotated`)."""
        if top_k < 1:
            raise FaceDBError("top_k must be at least 1")
        found = self.faces_in(paths, keep_pixels=annotate_into is not None)
        answers = self.answer(found, top_k=top_k, threshold=threshold)
        if annotate_into is not None:
            from .annotate import annotate

            for answer, photo in zip(answers, found):
                if photo.photo is not None:
                    target = Path(annotate_into) / (Path(answer.photo).stem + ".annotated.jpg")
                    answer.annotated = str(annotate(photo.photo.rgb, answer.faces, target, photo.photo.scale))
        return answers

    def threshold(self) -> ThresholdInForce:
        if self.settings.threshold is not None:
            return ThresholdInForce(value=self.settings.threshold, source="setting")
        e = self.embedder
        default = float(embedder_spec(self.model)["default_threshold"])
        calibration = CalibrationStore(self.store).latest(e.name, e.version, e.sha256, self.preprocessing)
        if calibration is None:
            return ThresholdInForce(value=default, source="default")
        if calibration.evidence.get("method") != CALIBRATION_METHOD and calibration.threshold > default:
            note = (
                f"the calibration of {calibration.created_at} ({calibration.threshold:.4f}) is not used: it was "
                f"measured on pairs, not on searches of everyone, and would loosen the default; "
                f"run facedb calibrate again"
            )
            return ThresholdInForce(value=default, source="default", note=note)
        return ThresholdInForce(value=calibration.threshold, source="calibrated", calibration=calibration)

    def answer(self, results: list[PhotoFaces], *, top_k: int = 3, threshold: float | None = None) -> list[WhoAnswer]:
        """Who-is-this answers for faces already found (by faces_in or faces_in_uploads)."""
        threshold = self.threshold().value if threshold is None else threshold
        stored = self.store.indexed_by_hash(r.content_hash for r in results if r.content_hash and r.faces)
        answers = []
        for result in results:
            faces = [self.identify(face, top_k=top_k, threshold=threshold) for face in result.faces]
            copies = stored.get(result.content_hash or "")
            if copies:
                self._name_stored_faces(faces, self.store.faces_of_photo(copies[0][0]))
            answers.append(WhoAnswer(photo=result.path, error=result.error, faces=faces))
        return answers

    @staticmethod
    def _name_stored_faces(answers: list[FaceAnswer], stored: list[StoredFace]) -> None:
        """Each answered face gets the id of the stored face it is (the same bytes were indexed:
        the boxes agree unless the detector changed since), the best overlaps first."""
        pairs = sorted(
            ((box_iou(a.box, s.box), i, s.id) for i, a in enumerate(answers) for s in stored),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        taken: set[int] = set()
        for overlap, i, face_id in pairs:
            if overlap < 0.5:
                break
            if answers[i].face_id is None and face_id not in taken:
                answers[i].face_id = face_id
                taken.add(face_id)

    def identify(self, face: Face, *, top_k: int, threshold: float) -> FaceAnswer:
        return FaceAnswer(
            box=face.box,
            score=face.detection.score,
            candidates=self.search(face.vector, top_k=top_k, threshold=threshold),
            threshold=threshold,
        )

    def search(self, embedding: np.ndarray, *, top_k: int = 3, threshold: float | None = None) -> list[IdentityMatch]:
        """The identity search alone, for an embedding made elsewhere (no detection)."""
        threshold = self.threshold().value if threshold is None else threshold
        model = self.model
        if len(embedding) != self.embedder.dimension:
            raise FaceDBError(
                f"the embedding has {len(embedding)} values; model {model} makes {self.embedder.dimension}"
            )
        nearest = self.store.nearest_identities(embedding, top_k, model)
        counts = self.store.faces_within(embedding, [c.identity_id for c in nearest], threshold, model)
        matches = []
        for c in nearest:
            within, faces = counts.get(c.identity_id, (0, 0))
            matches.append(
                IdentityMatch(
                    identity_id=c.identity_id,
                    name=c.name,
                    distance=c.distance,
                    faces_within_threshold=within,
                    faces=faces,
                    source=c.source,
                )
            )
        return matches

    # ---- calibration --------------------------------------------------------------------
    def calibrate(
        self,
        *,
        far: float = 1e-3,
        dry_run: bool = False,
        with_unlabelled: bool = False,
        seed: int = 0,
        max_faces: int = 100_000,
    ) -> CalibrationResult:
        """Choose the who threshold that names at most `far` of strangers' searches, estimated
        on this archive's own people searched against each other (see facedb.proof.calibrate;
        with_unlabelled: faces of nobody are strangers too), and store it as the model's, unless
        dry_run or the evidence is too thin to move the default."""
        from .proof.calibrate import calibrate

        if not 0 < far < 0.5:
            raise FaceDBError(f"--far must lie between 0 and 0.5, not {far}")
        faces = CalibrationStore(self.store)
        model = self.embedding_model_id
        placed = faces.placed_faces(model, max_faces, str(seed))
        rejected = faces.rejected_faces(model, max_faces, str(seed))
        nobody = faces.faces_of_nobody(model, max_faces, str(seed)) if with_unlabelled else None
        measured = calibrate(
            placed,
            rejected,
            nobody,
            far,
            float(embedder_spec(self.model)["default_threshold"]),
            unnamed_people_available=0 if with_unlabelled else faces.unnamed_people(),
            seed=seed,
        )
        names = faces.identity_names([c["nearest_identity_id"] for c in measured["closest_impostors"]])
        for closest in measured["closest_impostors"]:
            closest["nearest_name"] = names.get(closest["nearest_identity_id"])
        stored = measured["decision"] != "kept the default" and not dry_run
        calibration_id = faces.save(model, measured["threshold"], far, measured) if stored else None
        return CalibrationResult(
            **measured, stored=stored, calibration_id=calibration_id, dry_run=dry_run, in_force=self.threshold()
        )

    def cluster_params(self) -> ClusterParams:
        """The clustering settings; proposals use the calibrated threshold unless one is set."""
        calibrated = None
        if self.settings.propose_threshold is None:
            threshold = self.threshold()
            calibrated = threshold.value if threshold.source == "calibrated" else None
        return ClusterParams.from_settings(self.settings, calibrated_who_threshold=calibrated)

    # ---- people -------------------------------------------------------------------------
    @property
    def people_store(self) -> PeopleStore:
        return PeopleStore(self.store, self.model)

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
            people.summarise_changed(on_progress)
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
        self.people_store.summarise_changed(on_progress)
        return self.people_store.people(include_hidden=include_hidden, within=within, limit=limit, offset=offset)

    def count_people(self, *, include_hidden: bool = False) -> int:
        return self.people_store.count_people(include_hidden=include_hidden)

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
    ) -> FaceListing:
        """Stored faces with their ids, photos and people: a person's, the faces of nobody, or
        a photo's, by path or id (the filters given all apply), a page of `limit` from `offset`."""
        if person is not None and unassigned:
            raise FaceDBError("a face of nobody is in no person: give a person or unassigned, not both")
        if limit < 1 or offset < 0:
            raise FaceDBError("limit must be at least 1 and offset at least 0")
        identity_id = self.people_store.resolve(person)[0] if person is not None else None
        photo_ids = None if photo_id is None else [photo_id]
        if photo is not None:
            path = os.path.abspath(os.fspath(photo))
            known = self.store.known_files([path]).get(path)
            if known is None:
                raise NotFound(f"{path} is not in the index")
            photo_ids = [known.id]
        total, listed = self.people_store.faces(
            identity_id=identity_id, unassigned=unassigned, photo_ids=photo_ids, limit=limit, offset=offset
        )
        return FaceListing(total=total, offset=offset, faces=listed)

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
        from .annotate import contact_sheet

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

    # ---- face tags (XMP) ----------------------------------------------------------------
    def write_face_tags(self, paths: Sequence[str | os.PathLike] = (), *, embedded: bool = False) -> TagsWritten:
        """Write the names of the named faces of the photos under `paths` (all photos when
        none) as XMP face regions (MWG and Microsoft), into sidecars, or into the photos with
        `embedded` (their new bytes are recorded, so the next index takes them as unchanged).
        A photo that cannot be written is a failure of its own; the others go on."""
        from .files.face_tags import FaceTagError, write_tags
        from .files.images import exif_orientation

        prefixes = [os.path.abspath(os.fspath(p)) for p in paths]
        result = TagsWritten(photos=0, faces=0, written=[], unchanged=0)
        for photo_id, path, width, height, named in self.people_store.named_faces(prefixes):
            result.photos += 1
            photo = Path(path)
            try:
                orientation = exif_orientation(photo)
                target, changed = write_tags(photo, named, orientation, width, height, embedded=embedded)
            except (FaceTagError, ImageError) as exc:
                result.failures.append(FileFailure(path=path, reason=str(exc).removeprefix(f"{path}: ")))
                continue
            result.faces += len(named)
            if embedded and changed:
                data, digest = read_file(photo)
                info = photo.stat()
                self.store.file_changed_by_us(photo_id, len(data), info.st_mtime_ns, digest)
            if changed:
                result.written.append(str(target))
            else:
                result.unchanged += 1
        return result

    # ---- dedup --------------------------------------------------------------------------
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
            thresholds or DedupThresholds(),
            tiers,
            identity_threshold=self.threshold().value,
            same_person=self._same_person_pairs,
            max_pixels=self.settings.max_pixels,
            read_workers=self.settings.read_workers,
            say=on_progress or (lambda message: None),
        )

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

    # ---- evaluation (nothing is stored; the database is not opened) ----------------------
    def eval_folders(
        self,
        root: str | os.PathLike,
        strangers: str | os.PathLike | None = None,
        *,
        far: float = 1e-3,
        plot: str | os.PathLike | None = None,
        on_progress: Callable[[str], None] | None = None,
        models: Sequence[str] = (),
        causes: bool = False,
    ) -> dict:
        """LFW's verification protocol and leave-one-out identification on root/<person>/<photos>;
        with `strangers`, how many faces of people not in root would be named. With several
        `models`, each on the same photos and pairs: {"models": [...], "plot"}. The pairs judged
        wrong at the default threshold are listed; with `causes`, each with why (pair_errors.py)."""
        from .proof.evaluate import evaluate_folders

        keys = self._eval_models(models)
        try:
            return evaluate_folders(
                FaceExtractor(self.detector, self.embedder_of(keys[0]), self.settings.face_margin),
                self.settings,
                root,
                strangers,
                far=far,
                plot=plot,
                say=on_progress or (lambda message: None),
                embedders=[self.embedder_of(k) for k in keys],
                causes=causes,
            )
        except ValueError as exc:  # too few pairs for the protocol, and the like
            raise FaceDBError(f"{root}: {exc}") from None

    def eval_lfw(
        self,
        pairs_file: str | os.PathLike,
        images: str | os.PathLike,
        *,
        plot: str | os.PathLike | None = None,
        on_progress: Callable[[str], None] | None = None,
        causes: bool = False,
    ) -> dict:
        """The official LFW pairs file and protocol over images/<name>/<name>_NNNN.jpg; the pairs
        judged wrong at the default threshold, with `causes` each with why."""
        from .proof.evaluate import evaluate_lfw

        extractor = FaceExtractor(self.detector, self.embedder_of(self._eval_models(())[0]), self.settings.face_margin)
        try:
            return evaluate_lfw(
                extractor,
                self.settings,
                pairs_file,
                images,
                plot=plot,
                say=on_progress or (lambda message: None),
                causes=causes,
            )
        except ValueError as exc:
            raise FaceDBError(f"{pairs_file}: {exc}") from None

    def _eval_models(self, models: Sequence[str]) -> list[str]:
        """The models to evaluate: those asked for, else the setting, else the manifest's
        default (eval opens no database, so not the database's default)."""
        asked = list(models) or [self.settings.model or default_embedder()]
        return list(dict.fromkeys(embedder_spec(m)["key"] for m in asked))

    # ---- backups ------------------------------------------------------------------------
    def export(self, path: str | os.PathLike) -> dict:
        """Everything (photos, faces, embeddings, people, decisions) to a versioned file (see facedb.backup)."""
        from .db import backup

        return backup.export(self.store, Path(path))

    def import_(self, path: str | os.PathLike) -> dict:
        from .db import backup

        return backup.import_(self.store, Path(path))

    # ---- schema -------------------------------------------------------------------------
    def schema_revision(self) -> SchemaRevision:
        """The database (described, password hidden), its schema revision and the newest one."""
        db = self.database
        return SchemaRevision(database=db.describe(), current=db.current_revision(), newest=db.head_revision())

    def upgrade_schema(self, revision: str = "head") -> SchemaRevision:
        self.database.upgrade(revision)
        return self.schema_revision()

    def resolve_person(self, person: str | int) -> tuple[int, str | None]:
        """(id, name) of a person given by id or name; NotFound otherwise."""
        return self.people_store.resolve(person)

    # ---- integrity ----------------------------------------------------------------------
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

    # ---- models -------------------------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        """Every model the manifest pins, with how many faces carry its embedding."""
        embeddings = EmbeddingStore(self.store)
        _, by_model = embeddings.counts()
        default = embeddings.default_model() or default_embedder()
        margin = self.settings.face_margin
        listed = []
        for key, spec in embedder_specs().items():
            listed.append(
                ModelInfo(
                    model=key,
                    name=spec["name"],
                    dimension=int(spec["dimension"]),
                    trained_on=spec["trained_on"],
                    published_lfw_accuracy=float(spec["published_lfw_accuracy"]),
                    preprocessing=self.embedder_of(key).preprocessing(self.settings.face_margin),
                    sha256=spec["sha256"],
                    weights_present=weights_path(self.settings.model_cache, key).is_file(),
                    default=key == default,
                    faces=by_model.get(key, 0),
                    faces_without=embeddings.lacking(key, self.embedder_of(key).preprocessing(margin))[0],
                )
            )
        return listed

    def set_default_model(self, model: str) -> DefaultModel:
        """Make `model` the database's default; refused while faces lack its embedding."""
        key = embedder_spec(model)["key"]
        embeddings = EmbeddingStore(self.store)
        lacking, photos = embeddings.lacking(key, self.embedder_of(key).preprocessing(self.settings.face_margin))
        if lacking:
            raise FaceDBError(
                f"{lacking} faces (in {photos} photos) have no embedding of {key} made as facedb makes it now: "
                f"run `facedb reembed --model {key}` first"
            )
        previous = embeddings.default_model()
        embeddings.set_default_model(key)
        if self.settings.model is None:
            self._model = None
        return DefaultModel(model=key, previous=previous)

    def reembed(
        self,
        model: str | None = None,
        *,
        batch: int = 64,
        on_progress: ProgressCallback | None = None,
        on_failure: FailureCallback | None = None,
    ) -> ReembedSummary:
        """Give every stored face an embedding of `model`, cut again from its original photo as
        that model wants its crops. Batches of about `batch` faces (whole photos) are written
        in one transaction each, so an interrupted run resumes where it stopped; faces that
        have one made as facedb makes it now are skipped (one made with an older crop is
        replaced). A photo that is gone, unreadable or changed since it was indexed is a failure
        of its faces, reported, and the run goes on. People, confirmations and rejections belong
        to the faces and stay as they are."""
        from concurrent.futures import ThreadPoolExecutor

        from .db.codec import EmbeddingRow
        from .ingest.pipeline import ProgressEvent, StopAfterBatch
        from .vision.align import crop_face

        if batch < 1:
            raise FaceDBError("--batch must be at least 1")
        key = embedder_spec(model or self.model)["key"]
        embeddings = EmbeddingStore(self.store)
        embedder = self.embedder_of(key)
        margin = self.settings.face_margin
        pixel_limits = (self.settings.max_pixels, self.settings.max_decoded_pixels)
        preprocessing = embedder.preprocessing(margin)
        faces, _ = embeddings.counts()
        todo, _ = embeddings.lacking(key, preprocessing)
        model_id = self.embedding_model_id_of(key)
        summary = ReembedSummary(model=key, already=faces - todo)

        def crops_of(photo) -> tuple[list[int], list[np.ndarray], str | None]:
            try:
                data, digest = read_file(Path(photo.path))
                if photo.content_hash and digest != photo.content_hash:
                    raise ImageError("changed since it was indexed (run `facedb index` on it again)")
                photo_pixels = decode(data, *pixel_limits)
            except ImageError as exc:
                return [], [], str(exc)
            detections = [
                Detection(face.box, tuple(zip(face.landmarks[0::2], face.landmarks[1::2])), face.score)  # type: ignore[arg-type]
                for face in photo.faces
            ]
            crops = [crop_face(photo_pixels.rgb, d, margin, scale=photo_pixels.scale) for d in detections]
            return [f.face_id for f in photo.faces], crops, None

        started = time.monotonic()
        after, handled = 0, 0
        with StopAfterBatch() as stop, ThreadPoolExecutor(max(1, self.settings.read_workers)) as pool:
            while True:
                photos = embeddings.photos_lacking(key, preprocessing, after, batch)
                if not photos:
                    break
                after = photos[-1].photo_id
                ids: list[int] = []
                crops: list[np.ndarray] = []
                for photo, (face_ids, photo_crops, error) in zip(photos, pool.map(crops_of, photos)):
                    handled += len(photo.faces)
                    if error is not None:
                        summary.failures.append(FileFailure(path=photo.path, reason=error))
                        if on_failure:
                            on_failure(photo.path, error)
                        continue
                    ids += face_ids
                    crops += photo_crops
                    summary.photos += 1
                vectors = embedder.embed(np.stack(crops)) if crops else np.zeros((0, embedder.dimension), np.float32)
                summary.faces += embeddings.write(
                    [EmbeddingRow(i, key, model_id, vector) for i, vector in zip(ids, vectors)], replace=True
                )
                if on_progress:
                    on_progress(
                        ProgressEvent(handled, todo, summary.faces, len(summary.failures), time.monotonic() - started)
                    )
                if stop.requested:
                    summary.interrupted = True
                    break
        summary.seconds = time.monotonic() - started
        summary.faces_per_second = summary.faces / summary.seconds if summary.seconds > 0 else 0.0
        summary.left = embeddings.lacking(key, preprocessing)[0]
        return summary

    # ---- reports ------------------------------------------------------------------------
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
