"""The parts a FaceDB is made of, each created on first use: the database and its stores, the
detector, the embedders and the model in use. Every facet of FaceDB builds on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

from ..config import Settings
from ..db.apikeys import ApiKeys
from ..db.calibrations import CalibrationStore
from ..db.database import Database
from ..db.embeddings import EmbeddingStore
from ..db.people import PeopleStore
from ..db.store import Store
from ..ingest.analysis import FaceExtractor
from ..ingest.pipeline import Indexer
from ..proof.calibrate import METHOD as CALIBRATION_METHOD
from ..results import ThresholdInForce
from ..vision.detect import Detector, MtcnnDetector
from ..vision.embed import Embedder, FacenetEmbedder
from ..vision.weights import default_embedder, embedder_spec, model_distances

if TYPE_CHECKING:
    from ..ingest.distributed import RayAnalysis


class Parts:
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
    def people_store(self) -> PeopleStore:
        return PeopleStore(self.store, self.model)

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def extractor(self) -> FaceExtractor:
        return self.extractor_of(self.model)

    def extractor_of(self, model: str) -> FaceExtractor:
        return FaceExtractor(self.detector, self.embedder_of(model), self.settings.face_margin)

    def follow_default_model(self) -> str:
        """The model in use, after taking up the database's default if it changed since (in
        another process: `facedb models default`): its weights are loaded before it is used,
        so a running service answers with the old model until the new one is ready. A model
        chosen by --model or FACEDB_MODEL stays."""
        if self.settings.model is None:
            default = embedder_spec(self.default_model)["key"]
            if default != self._model:
                self.embedder_of(default).load()
                self._model = default
        return self.model

    def faces_embedded_by(self, model: str) -> int:
        """Faces with an embedding of `model` (stored counts)."""
        _, made = EmbeddingStore(self.store).counts()
        return sum(n for (key, _), n in made.items() if key == model)

    def named_model(self, model: str | None) -> str:
        """The manifest's key of `model` (None: the model in use); UnknownModel if it has none."""
        return self.model if model is None else embedder_spec(model)["key"]

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

    def threshold(self, model: str | None = None) -> ThresholdInForce:
        """Who-is-this's threshold for `model` (None: the one in use): the setting, else the
        model's latest calibration, else the model's default."""
        if self.settings.threshold is not None:
            return ThresholdInForce(value=self.settings.threshold, source="setting")
        key = self.named_model(model)
        e = self.embedder_of(key)
        default = model_distances(key).threshold
        calibration = CalibrationStore(self.store).latest(
            e.name, e.version, e.sha256, e.preprocessing(self.settings.face_margin)
        )
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

    def resolve_person(self, person: str | int) -> tuple[int, str | None]:
        """(id, name) of a person given by id or name; NotFound otherwise."""
        return self.people_store.resolve(person)
