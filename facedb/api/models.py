"""FaceDB's models facet: the pinned models, the database's default, and re-embedding every
stored face with another model."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..db.embeddings import EmbeddingStore
from ..errors import FaceDBError, ImageError, WeightsUnavailable
from ..faces import Detection
from ..files.images import decode, read_file
from ..ingest.pipeline import FailureCallback, ProgressCallback
from ..results import DefaultModel, FetchedModel, FileFailure, ModelDefaults, ModelInfo, ReembedSummary
from ..vision.weights import (
    default_embedder,
    embedder_spec,
    embedder_specs,
    embedder_weights,
    model_distances,
    sha256_file,
    weights_path,
)
from .photos import Photos


class Models(Photos):
    def models(self) -> list[ModelInfo]:
        """Every model the manifest pins: what it is, its fingerprint (weights and crop), its
        distances, the threshold in force, and how many faces carry its embedding (stored
        counts: a few rows read whatever the archive's size)."""
        embeddings = EmbeddingStore(self.store)
        faces, made = embeddings.counts()
        default = embeddings.default_model() or default_embedder()
        margin = self.settings.face_margin
        listed = []
        for key, spec in embedder_specs().items():
            preprocessing = self.embedder_of(key).preprocessing(margin)
            distances = model_distances(key)
            listed.append(
                ModelInfo(
                    model=key,
                    name=spec["name"],
                    dimension=int(spec["dimension"]),
                    trained_on=spec["trained_on"],
                    published_lfw_accuracy=float(spec["published_lfw_accuracy"]),
                    preprocessing=preprocessing,
                    sha256=spec["sha256"],
                    weights_present=weights_path(self.settings.model_cache, key).is_file(),
                    default=key == default,
                    in_use=key == self.model,
                    faces=sum(n for (model, _), n in made.items() if model == key),
                    faces_without=faces - made.get((key, preprocessing), 0),
                    threshold=self.threshold(key),
                    distances=ModelDefaults(**asdict(distances)),
                )
            )
        return listed

    def fetch_models(self) -> list[FetchedModel]:
        """Every pinned model's weights, fetched if missing and checked against their sha256,
        and its ONNX graph converted, now: later runs need no network and no conversion (the
        Docker image does this when it is built). No database is opened."""
        from ..vision.onnx_runtime import embedder_path

        fetched = []
        for model, spec in embedder_specs().items():
            started = time.perf_counter()
            weights = embedder_weights(self.settings.model_cache, model)
            if sha256_file(weights) != spec["sha256"]:  # a cached file is otherwise known by its size alone
                raise WeightsUnavailable(f"{weights}: does not match its pinned sha256; delete it and fetch again")
            # FROZEN_GRAPH_MODEL's conversion brings MTCNN's networks too
            onnx = embedder_path(self.settings.model_cache, model)
            fetched.append(
                FetchedModel(model=model, sha256=spec["sha256"], onnx=str(onnx), seconds=time.perf_counter() - started)
            )
        return fetched

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

        from ..db.codec import EmbeddingRow
        from ..ingest.pipeline import ProgressEvent, StopAfterBatch
        from ..vision.align import crop_face

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
