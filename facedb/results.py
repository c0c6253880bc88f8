"""The answers FaceDB gives: one typed shape each, used by the Python API, as the REST
service's response models (so they are its OpenAPI schema) and by the CLI's printers, whose
`--json` is `model_dump(mode="json")` of the same object: the same field names everywhere.

Values keep their full precision in Python; distances, boxes and scores are rounded only
where they are written out (JSON, text), so that a decision such as "within the threshold"
never depends on a rounding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, computed_field

from .faces import Face
from .files.images import DecodedPhoto


def _rounded(digits: int) -> PlainSerializer:
    return PlainSerializer(lambda v: round(float(v), digits), return_type=float, when_used="json")


def _rounded_or_none(digits: int) -> PlainSerializer:
    return PlainSerializer(
        lambda v: None if v is None else round(float(v), digits), return_type=float | None, when_used="json"
    )


Distance = Annotated[float, _rounded(4)]
Score = Annotated[float, _rounded(4)]
# x, y, width, height in the photo's pixels
Box = Annotated[
    tuple[float, float, float, float],
    PlainSerializer(lambda b: [round(float(v), 1) for v in b], return_type=list[float], when_used="json"),
]

# A capture time as the camera's clock said it (EXIF): local time, ISO 8601 with no offset, so
# not the "date-time" of JSON Schema (RFC 3339 needs one) that pydantic would declare.
CameraTime = Annotated[
    datetime,
    WithJsonSchema({"type": "string", "description": "the camera's local time (EXIF), ISO 8601 with no offset"}),
]


class Result(BaseModel):
    # defer_build: validators are built on first use, not at import (40 models took 50 ms of
    # every command's start)
    model_config = ConfigDict(extra="forbid", defer_build=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: what the REST service answers and what `--json` prints."""
        return self.model_dump(mode="json")


class FileFailure(Result):
    path: str
    reason: str


class FileWarning(Result):
    path: str
    message: str


# ---- who is this, search, compare ----------------------------------------------------------
@dataclass
class PhotoFaces:
    """The faces found in one photo that is not stored (`faces_in`), embeddings and pixels
    included: the Python API's raw answer, which `who` and `compare` turn into theirs."""

    path: str
    faces: list[Face]
    photo: DecodedPhoto | None = None
    error: str | None = None
    content_hash: str | None = None  # sha256 of the bytes: finds the photo if it is stored
    model: str = ""  # the embedding model that embedded the faces (their search must use it)


class IdentityMatch(Result):
    """One known identity near a face: the distance of its nearest face, how many of its faces
    lie within the threshold, and how that nearest face got its identity."""

    identity_id: int
    name: str | None
    distance: Distance
    faces_within_threshold: int
    faces: int
    source: str  # enrolled, confirmed, proposed or clustered


class FaceAnswer(Result):
    box: Box
    score: Score
    candidates: list[IdentityMatch]
    threshold: float = Field(exclude=True)
    face_id: int | None = None  # the stored face, when the photo is in the index (its bytes)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def identity(self) -> str | None:
        """The nearest identity's name when it lies within the threshold, else None (unknown)."""
        if self.candidates and self.candidates[0].distance <= self.threshold:
            return self.candidates[0].name or f"person #{self.candidates[0].identity_id}"
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unknown(self) -> bool:
        return self.identity is None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def distance(self) -> Annotated[float | None, _rounded_or_none(4)]:
        return self.candidates[0].distance if self.candidates else None


class WhoAnswer(Result):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    photo: str  # as given: a path, or an upload's file name
    error: str | None = None
    model: str = ""  # the embedding model the faces were embedded and searched with
    faces: list[FaceAnswer] = []
    annotated: str | None = None  # the copy with boxes and names, when asked for (`who --annotate`)


class SearchAnswer(Result):
    model: str  # the embeddings searched
    candidates: list[IdentityMatch]


class ComparedFace(Result):
    photo: str
    face: int  # its number within the photo
    box: Box
    score: Score


class PhotoError(Result):
    photo: str
    error: str


class CompareAnswer(Result):
    faces: list[ComparedFace]
    distances: list[list[Distance]]  # between every two faces, in the order of `faces`
    errors: list[PhotoError]
    photos_without_faces: list[str]


# ---- indexing --------------------------------------------------------------------------------
class IndexSummary(Result):
    files: int = 0
    new: int = 0
    reindexed: int = 0
    unchanged: int = 0
    copies: int = 0
    moved: int = 0
    failed: int = 0
    faces: int = 0
    seconds: float = 0.0  # the work's wall time: not the database's start, not the models' load
    model_load_seconds: float = 0.0  # loading (and on first use converting) the models, when this run did
    wall_seconds: float = 0.0  # the whole call: database start, model load and work
    interrupted: bool = False  # stopped by Ctrl-C after a complete batch
    stage_seconds: dict[str, float] = {}  # read, decode, detect, align, tags (XMP), embed, write
    failures: list[FileFailure] = []
    tagged_faces: int = 0  # faces named by their photo's XMP face tags (confirmed)
    warnings: list[FileWarning] = []  # face tags that named no detected face, or could not be read
    # with --ray: the workers that did the model work, "host:pid (node N)", N the start of the Ray node ID
    ray_workers: list[str] = []
    retried_chunks: int = 0  # with --ray: chunks of photos sent again after their worker was lost
    photo_ids: dict[str, int] = Field(default_factory=dict, exclude=True)  # path -> photo id, for enrol

    @property
    def changed(self) -> bool:
        """A photo was indexed anew, moved, copied or failed: more than files found unchanged."""
        return bool(self.new or self.reindexed or self.moved or self.copies or self.failed)


class WatchRound(Result):
    """One round of `index --watch`: the files that arrived or changed, indexed (moves keep
    their faces and people), and the stored photos whose files went, forgotten."""

    rescan: bool  # the periodic rescan of every watched folder, not events
    index: IndexSummary | None = None
    gone: list[str] = []  # photos forgotten: their files went
    kept: int = 0  # photos missing with their whole folder (a disk not mounted?): kept

    @property
    def changed(self) -> bool:
        """Something was indexed anew, moved, copied, failed, forgotten or kept."""
        return (self.index is not None and self.index.changed) or bool(self.gone or self.kept)


class Job(Result):
    """An indexing job of the REST service."""

    id: int
    state: Literal["queued", "running", "done", "failed"] = "queued"
    paths: list[str]
    done: int = 0
    total: int = 0
    faces: int = 0
    failed: int = 0
    result: IndexSummary | None = None
    error: str | None = None


class EnrollResult(Result):
    name: str
    identity_id: int | None = None
    enrolled: list[str] = []
    warnings: list[FileWarning] = []
    failures: list[FileFailure] = []


# ---- thresholds and calibration --------------------------------------------------------------
class StoredCalibration(Result):
    id: int
    threshold: float
    far_target: float
    evidence: dict[str, Any]  # what `facedb calibrate` measured, as stored
    created_at: str


class ThresholdInForce(Result):
    """The who-is-this threshold and where it came from: a setting (flag or FACEDB_THRESHOLD), the
    database's calibration for the model, or the documented default."""

    model_config = ConfigDict(frozen=True)

    value: Annotated[float, _rounded(4)]
    source: Literal["setting", "calibrated", "default"]
    calibration: StoredCalibration | None = None
    # why a stored calibration is not in force (one made on pairs, before 1:N calibration, that loosens)
    note: str | None = None


class CalibrationNeeds(Result):
    """What a calibration must rest on before it may loosen the model's default."""

    identities: int  # people: named ones, and unnamed clusters used as strangers
    probes: int  # searches by people who are not there, for the asked rate to be seen at all
    genuine_probes: int  # faces with another photo of their own person, to price the threshold


class ClosestImpostor(Result):
    """One of the searches that came nearest to naming someone the face is not."""

    face_id: int
    kind: Literal["placed", "rejected", "nobody"]  # a named person's face, a rejected one, a face of nobody
    nearest_face_id: int
    nearest_identity_id: int
    nearest_name: str | None = None
    distance: Distance


Rate = Annotated[float | None, _rounded_or_none(6)]
Interval = Annotated[
    tuple[float, float] | None,
    PlainSerializer(lambda v: None if v is None else [round(x, 6) for x in v], when_used="json"),
]


class CalibrationResult(Result):
    """`facedb calibrate`: the threshold for a false positive identification rate (FPIR, the
    share of strangers' searches that name somebody), what it costs, and what it rests on."""

    method: Literal["open-set identification"]
    threshold: Distance  # chosen: stored unless dry_run or kept the default
    measured_threshold: Annotated[float | None, _rounded_or_none(4)]  # the searches' own, for the rate
    default_threshold: Distance
    decision: Literal["calibrated", "tightened", "kept the default"]
    reason: str | None  # one line: why the default was kept or only tightened
    far_target: float  # the asked FPIR
    enough: bool  # evidence enough to loosen the default
    needed: CalibrationNeeds
    people: int  # named people whose placed faces were searched
    unnamed_people: int | None  # unnamed clusters counted as strangers (None: not asked)
    unassigned_faces: int | None  # faces of nobody in no cluster, counted as strangers
    identities: int  # people plus unnamed people
    placed_faces: int
    probes: int
    probes_of_people: int  # placed faces, each against every other named person
    probes_of_nobody: int
    probes_rejected: int  # rejected faces against the people they are not
    same_shot_left_out: int  # faces of nobody within the same-shot distance of a placed face
    false_identifications: int  # probes within the threshold of someone they are not
    fpir: Rate
    fpir_ci: Interval  # 95% (Wilson)
    false_identifications_at_default: int
    fpir_at_default: Rate
    fpir_at_default_ci: Interval
    genuine_probes: int  # placed faces with another photo of their own person
    recall: Rate  # of them, found: their own person nearest and within the threshold
    recall_ci: Interval
    recall_at_default: Rate
    closest_impostors: list[ClosestImpostor]
    stored: bool
    calibration_id: int | None
    dry_run: bool
    in_force: ThresholdInForce  # after this calibration


# ---- people ----------------------------------------------------------------------------------
class PersonSummary(Result):
    id: int
    name: str | None
    hidden: bool  # set aside (`facedb hide`): left out of the lists unless asked for
    faces: int  # stored faces, copies included
    distinct_faces: int  # a face and its copies (the same picture, as dedup's tiers 1-2) counted once
    enrolled: int  # faces given by `enroll`
    confirmed: int  # faces a person placed or accepted (naming, `move`, `confirm`)
    proposed: int
    clustered: int
    photos: int
    representative_face_id: int | None  # the face nearest the person's centre
    representative_photo: str | None


class FaceOfPerson(Result):
    face_id: int
    photo_id: int
    photo: str
    taken_at: CameraTime | None  # the photo's capture time, for browsing a person by date
    box: Box
    source: str
    distance_to_centre: Annotated[float | None, _rounded_or_none(4)]  # None: no embedding of the model


class PersonDetail(Result):
    id: int
    name: str | None
    hidden: bool
    faces: list[FaceOfPerson]  # nearest the person's centre first


class ListedFace(Result):
    """A stored face, its photo and its person (none: a face of nobody yet)."""

    face_id: int
    photo_id: int
    photo: str
    box: Box
    score: Score
    person_id: int | None
    name: str | None
    source: str | None  # how it got its person: enrolled, confirmed, proposed, clustered


class FaceListing(Result):
    total: int  # faces that match, of which `faces` is one page
    offset: int
    after: int | None = None  # the page starts after this face id (then `offset` more)
    faces: list[ListedFace]


class TagsWritten(Result):
    """`facedb tags write`: the files written (sidecars, or photos with `embedded`)."""

    photos: int  # photos with named faces
    faces: int  # named faces written as regions
    written: list[str]  # files changed (a file already holding the same regions is left alone)
    unchanged: int
    failures: list[FileFailure] = []


class DedupReport(Result):
    """The dedup report (`facedb dedup --json`, `POST /v1/dedup`): a versioned document whose
    groups are described in docs/people-and-dedup.md."""

    format: Literal["facedb-dedup"]
    version: int
    generated_at: str
    scope: list[str] | None  # the files and folders it covers (None: the whole database)
    photos: int
    thresholds: dict[str, float]
    counts: dict[str, int]  # groups per tier
    groups: list[dict[str, Any]]


class HiddenChange(Result):
    id: int
    name: str | None
    hidden: bool


class Renamed(Result):
    id: int
    name: str


class Merged(Result):
    id: int  # the person kept
    merged: int  # the person whose faces moved
    faces_moved: int


class Moved(Result):
    face_id: int
    person_id: int


class Rejected(Result):
    face_id: int
    rejected_from: int


class Confirmed(Result):
    id: int
    confirmed: int  # faces newly confirmed


class SplitPart(Result):
    faces: int
    face_ids: list[int]
    new_person_id: int | None = None  # set when the part became a person of its own


class SplitResult(Result):
    id: int
    name: str | None
    eps: float
    parts: list[SplitPart]  # largest first; one part: nothing to split
    silhouette: Annotated[float | None, _rounded_or_none(3)]  # how far apart the parts are, -1..1
    spread_whole: Distance  # the person's mean distance from their centre
    spread_parts: Distance  # the faces' mean distance from their part's centre
    verdict: str  # what was found, with the figures, in words
    applied: bool


class Forgotten(Result):
    id: int
    name: str | None
    faces: int
    photos: int


class NewPerson(Result):
    faces: int
    face_ids: list[int]
    person_id: int | None = None  # None in a dry run


class JoiningPerson(Result):
    person_id: int
    name: str | None
    faces: int
    face_ids: list[int]


class MergeSuggestion(Result):
    people: tuple[int, int]
    names: tuple[str | None, str | None]
    distance: Distance
    faces: tuple[int, int]  # the closest two faces, one of each, in the order of `people`
    face_pairs: int  # pairs of their faces within the who threshold


class ClusterResult(Result):
    faces_considered: int
    new_people: list[NewPerson]
    joining: list[JoiningPerson]
    leaving: list[int]  # faces whose proposed or clustered identity goes away
    unchanged: int
    merge_suggestions: list[MergeSuggestion]
    dry_run: bool


# ---- the store -------------------------------------------------------------------------------
class StoredFailure(Result):
    path: str
    reason: str
    when: datetime


class Status(Result):
    database: str
    photos: int
    indexed: int
    failed: int
    faces: int
    identities: int
    assigned_faces: int
    model: str  # the embedding model in use (the database's default unless --model / FACEDB_MODEL)
    threshold: ThresholdInForce
    failures: list[StoredFailure] | None = None  # when asked for (`status --errors`)
    replicas: list[ReplicaStatus] = []  # FACEDB_READ_URLS


class ReplicaStatus(Result):
    url: str  # without its password
    answers: bool
    standby: bool | None = None  # replaying the primary's WAL (a streaming replica)
    behind_s: float | None = None  # since the last transaction it replayed was committed
    reason: str | None = None  # why it does not answer


class ModelDefaults(Result):
    """A model's own distances (its manifest entry): settings override them for every model."""

    threshold: float  # who is this, before `facedb calibrate`
    cluster_eps: float
    propose_threshold: float
    same_face_distance: float
    near_duplicate_face_distance: float


class ModelInfo(Result):
    """One embedding model of models/manifest.json, as `facedb models` and GET /v1/models list it."""

    model: str  # the name --model (and the service's `model`) takes
    name: str
    dimension: int
    trained_on: str
    published_lfw_accuracy: float
    preprocessing: str
    sha256: str
    weights_present: bool  # fetched into the model cache already
    default: bool  # the database's default model
    in_use: bool  # what this process answers with when no model is named (the default, or --model)
    faces: int  # faces with an embedding of it
    faces_without: int  # faces that still lack one made as facedb makes it now (`facedb reembed --model`)
    threshold: ThresholdInForce  # who-is-this's threshold with this model
    distances: ModelDefaults


class DefaultModel(Result):
    model: str
    previous: str | None


class FetchedModel(Result):
    """One model made ready by `facedb models fetch`: its weights checked, its ONNX graph in the cache."""

    model: str
    sha256: str  # of the pinned weights, checked
    onnx: str  # the converted graph ONNX Runtime loads
    seconds: float  # 0 or so when the cache had it already


class ReembedSummary(Result):
    model: str
    faces: int = 0  # embeddings written
    photos: int = 0  # photos read for them
    already: int = 0  # faces that had an embedding of the model before this run
    left: int = 0  # faces still without one (their photos failed)
    seconds: float = 0.0
    faces_per_second: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C after a complete batch
    failures: list[FileFailure] = []  # photos gone, unreadable or changed since they were indexed


class IdentityCount(Result):
    id: int
    name: str | None
    faces: int


class SchemaRevision(Result):
    database: str
    current: str | None
    newest: str | None


class CheckResult(Result):
    problems: dict[str, list[Any]]  # kind -> what is wrong; only kinds with problems
    repaired: dict[str, int] = {}
    after: dict[str, list[Any]] | None = None  # what is left after the repairs (`check --fix`)


class ApiKeyListing(Result):
    id: int
    name: str
    scope: Literal["read", "write", "admin"]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class Health(Result):
    ok: bool
    database: bool
    models: bool
