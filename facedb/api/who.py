"""FaceDB's who-is-this facet: the nearest known people of each face, by Euclidean distance,
with an honest unknown past the threshold in force."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import FaceDBError
from ..faces import Face, box_iou
from ..records import StoredFace
from ..results import FaceAnswer, IdentityMatch, PhotoFaces, WhoAnswer
from .photos import Photos


class WhoIsThis(Photos):
    def who(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        top_k: int = 3,
        threshold: float | None = None,
        annotate_into: str | os.PathLike | None = None,
        model: str | None = None,
    ) -> list[WhoAnswer]:
        """Who is in each photo, by `model`'s embeddings (None: the model in use); with
        `annotate_into`, a copy of each photo with its faces boxed and named is written into
        that folder (`WhoAnswer.annotated`)."""
        if top_k < 1:
            raise FaceDBError("top_k must be at least 1")
        found = self.faces_in(paths, keep_pixels=annotate_into is not None, model=model)
        answers = self.answer(found, top_k=top_k, threshold=threshold)
        if annotate_into is not None:
            from ..annotate import annotate

            for answer, photo in zip(answers, found):
                if photo.photo is not None:
                    target = Path(annotate_into) / (Path(answer.photo).stem + ".annotated.jpg")
                    answer.annotated = str(annotate(photo.photo.rgb, answer.faces, target, photo.photo.scale))
        return answers

    def answer(self, results: list[PhotoFaces], *, top_k: int = 3, threshold: float | None = None) -> list[WhoAnswer]:
        """Who-is-this answers for faces already found (by faces_in or faces_in_uploads), each
        searched among the embeddings of the model that embedded it, at that model's threshold
        unless one is given."""
        stored = self.store.indexed_by_hash(r.content_hash for r in results if r.content_hash and r.faces)
        answers = []
        for result in results:
            model = result.model or self.model
            if result.faces:
                self._searchable(model)
            limit = self.threshold(model).value if threshold is None else threshold
            faces = [self._identified(face, top_k, limit, model) for face in result.faces]
            copies = stored.get(result.content_hash or "")
            if copies:
                self._name_stored_faces(faces, self.store.faces_of_photo(copies[0][0]))
            answers.append(WhoAnswer(photo=result.path, error=result.error, model=model, faces=faces))
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

    def identify(self, face: Face, *, top_k: int, threshold: float, model: str | None = None) -> FaceAnswer:
        model = self.named_model(model)
        self._searchable(model)
        return self._identified(face, top_k, threshold, model)

    def _identified(self, face: Face, top_k: int, threshold: float, model: str) -> FaceAnswer:
        return FaceAnswer(
            box=face.box,
            score=face.detection.score,
            candidates=self._matches(face.vector, top_k, threshold, model),
            threshold=threshold,
        )

    def _searchable(self, model: str) -> None:
        """Refuse a model no stored face has an embedding of: its search would name nobody."""
        if model != self.model and not self.faces_embedded_by(model):
            raise FaceDBError(
                f"no stored face has an embedding of {model} yet, so nobody could be found: "
                f"run `facedb reembed --model {model}` first"
            )

    def search(
        self, embedding: np.ndarray, *, top_k: int = 3, threshold: float | None = None, model: str | None = None
    ) -> list[IdentityMatch]:
        """The identity search alone, for an embedding made elsewhere (no detection) by `model`
        (None: the model in use), among the stored embeddings of that model."""
        model = self.named_model(model)
        threshold = self.threshold(model).value if threshold is None else threshold
        dimension = self.embedder_of(model).dimension
        if len(embedding) != dimension:
            raise FaceDBError(f"the embedding has {len(embedding)} values; model {model} makes {dimension}")
        self._searchable(model)
        return self._matches(embedding, top_k, threshold, model)

    def _matches(self, embedding: np.ndarray, top_k: int, threshold: float, model: str) -> list[IdentityMatch]:
        """The nearest people among `model`'s embeddings, each with its faces within `threshold`."""
        nearest = self.store.nearest.identities(embedding, top_k, model)
        counts = self.store.nearest.faces_within(embedding, [c.identity_id for c in nearest], threshold, model)
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
