"""FaceDB's proof facet: `calibrate` (a threshold from the archive's own people) and `eval`
(the published protocol on labelled photos; nothing is stored)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..db.calibrations import CalibrationStore
from ..errors import FaceDBError
from ..ingest.analysis import FaceExtractor
from ..results import CalibrationResult
from ..vision.weights import default_embedder, embedder_spec, model_distances
from .parts import Parts


class Proof(Parts):
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
        from ..proof.calibrate import calibrate

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
            model_distances(self.model).threshold,
            unnamed_people_available=0 if with_unlabelled else faces.unnamed_people(),
            seed=seed,
            same_face_distance=model_distances(self.model).same_face_distance,
        )
        names = faces.identity_names([c["nearest_identity_id"] for c in measured["closest_impostors"]])
        for closest in measured["closest_impostors"]:
            closest["nearest_name"] = names.get(closest["nearest_identity_id"])
        stored = measured["decision"] != "kept the default" and not dry_run
        calibration_id = faces.save(model, measured["threshold"], far, measured) if stored else None
        return CalibrationResult(
            **measured, stored=stored, calibration_id=calibration_id, dry_run=dry_run, in_force=self.threshold()
        )

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
        from ..proof.evaluate import evaluate_folders

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
        from ..proof.evaluate import evaluate_lfw

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
