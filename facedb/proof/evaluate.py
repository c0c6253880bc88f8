"""`facedb eval`: the published verification protocol (and leave-one-out identification) on the
user's own labelled photos, with facedb's detector and embedder as they are configured. Nothing
is stored: photos go through decode -> detect -> align -> embed in memory, one face a photo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import FaceDBError, ImageError
from ..faces import Detection, Face, main_face
from ..files.images import decode, read_file
from ..files.scan import scan
from ..ingest.analysis import FaceExtractor
from ..ingest.pipeline import bounded_map
from ..vision.embed import Embedder
from ..vision.weights import embedder_spec
from . import evaluation, pair_errors

CHUNK = 64  # photos detected, then embedded together; only their vectors are kept


@dataclass
class Embedded:
    """One vector per photo that had a face (per model: the same crops embedded by each); the
    others, with why."""

    paths: list[str]
    vectors: np.ndarray  # the first model's
    no_face: list[str]
    failed: list[tuple[str, str]]
    by_model: dict[str, np.ndarray] = field(default_factory=dict)
    embed_seconds: dict[str, float] = field(default_factory=dict)  # each model's embedding time alone
    detections: list[Detection] = field(default_factory=list)  # the face of each vector

    def of(self, model: str) -> Embedded:
        return Embedded(self.paths, self.by_model[model], self.no_face, self.failed, detections=self.detections)


def embed_photos(
    extractor: FaceExtractor,
    paths: Iterable[str],
    settings: Settings,
    say: Callable[[str], None] = lambda message: None,
    *,
    every_face: bool = False,
    embedders: Sequence[Embedder] = (),
) -> Embedded:
    """The main face of every photo (or every face), embedded in chunks: memory holds one
    chunk of crops. Detected once; with `embedders`, each of them embeds the same crops."""
    paths = list(paths)
    embedders = list(embedders) or [extractor.embedder]
    found_paths: list[str] = []
    found_faces: list[Detection] = []
    no_face: list[str] = []
    failed: list[tuple[str, str]] = []
    vectors: dict[str, list[np.ndarray]] = {e.model: [] for e in embedders}
    seconds = dict.fromkeys(vectors, 0.0)

    def analyse(path: str) -> tuple[str, list[Face], str | None]:
        try:
            photo = decode(read_file(Path(path))[0], settings.max_pixels, settings.max_decoded_pixels)
        except ImageError as exc:
            return path, [], str(exc)
        detections = extractor.detect(photo)
        if not every_face:
            chosen = main_face(detections, photo.meta.width, photo.meta.height)
            detections = [chosen] if chosen else []
        return path, extractor.align(photo, detections), None

    for embedder in embedders:  # loaded outside the clock of its seconds per face
        embedder.load()
    done, started = 0, time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, settings.detect_workers), thread_name_prefix="facedb-eval") as pool:
        for start in range(0, len(paths), CHUNK):
            results = list(bounded_map(pool, analyse, paths[start : start + CHUNK], ahead=2 * settings.detect_workers))
            crops = [face.crop for _, faces, _ in results for face in faces]
            for embedder in embedders:
                if crops:
                    began = time.perf_counter()
                    vectors[embedder.model].extend(embedder.embed(np.stack(crops)))
                    seconds[embedder.model] += time.perf_counter() - began
            for path, faces, error in results:
                if error is not None:
                    failed.append((path, error))
                elif not faces:
                    no_face.append(path)
                found_paths.extend(path for _ in faces)
                found_faces.extend(face.detection for face in faces)
            done += len(results)
            rate = done / max(time.monotonic() - started, 1e-9)
            say(
                f"{done}/{len(paths)} photos  {len(found_paths)} faces  {len(no_face)} without a face  "
                f"{rate:.1f} photos/s  ETA {(len(paths) - done) / rate:.0f}s"
            )
    by_model = {
        e.model: np.stack(vectors[e.model]) if vectors[e.model] else np.zeros((0, e.dimension), np.float32)
        for e in embedders
    }
    return Embedded(found_paths, by_model[embedders[0].model], no_face, failed, by_model, seconds, found_faces)


def people_folders(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """DIR/<person>/<photos> (LFW's layout) -> (photo paths, person of each)."""
    root = Path(root)
    if not root.is_dir():
        raise FaceDBError(f"{root}: not a folder")
    paths, labels = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for item in scan([person]):
            if item.error is None:
                paths.append(item.path)
                labels.append(person.name)
    if not paths:
        raise FaceDBError(f"{root}: no photos in DIR/<person>/ folders")
    return paths, labels


def _check_plot_target(plot: str | os.PathLike | None) -> None:
    """Before the photos are read, not after: a plot that cannot be written fails at once."""
    if plot and not Path(plot).resolve().parent.is_dir():
        raise FaceDBError(f"{plot}: cannot write the plot: no folder {Path(plot).resolve().parent}")


def _plot(distances: np.ndarray, same: np.ndarray, threshold: float, plot: str | os.PathLike, title: str) -> None:
    try:
        evaluation.plot(distances, same, threshold, Path(plot), title=title)
    except OSError as exc:
        raise FaceDBError(f"{plot}: cannot write the plot: {exc.strerror or exc}") from None


def evaluate_folders(
    extractor: FaceExtractor,
    settings: Settings,
    root: str | os.PathLike,
    strangers: str | os.PathLike | None = None,
    *,
    far: float = 1e-3,
    seed: int = 0,
    plot: str | os.PathLike | None = None,
    say: Callable[[str], None] = lambda m: None,
    embedders: Sequence[Embedder] = (),
    causes: bool = False,
) -> dict:
    """One model's evaluation; with several `embedders`, {"models": [one per model], "plot"}:
    the same photos, detected once, the same pairs, each model's figures and its seconds per
    face, and both ROC curves in one PNG. With `causes`, each pair misjudged at the default
    threshold is looked at again the tutorial's way (pair_errors.py)."""
    _check_plot_target(plot)
    embedders = list(embedders) or [extractor.embedder]
    paths, labels = people_folders(root)
    label_of = dict(zip(paths, labels))
    say(f"{len(paths)} photos of {len(set(labels))} people")
    embedded = embed_photos(extractor, paths, settings, say, embedders=embedders)
    found_labels = [label_of[p] for p in embedded.paths]
    i, j, same = evaluation.pairs_from_labels(found_labels, seed=seed)
    if not same.any():
        raise FaceDBError(f"{root}: no person has two photos with a face: nothing to verify")
    asked = None
    if strangers is not None:
        files = [c.path for c in scan([strangers]) if c.error is None]
        if not files:
            raise FaceDBError(f"{strangers}: no photos of strangers")
        say(f"{len(files)} photos of strangers")
        asked = embed_photos(extractor, files, settings, say, every_face=True, embedders=embedders)
    results: list[dict] = []
    curves: list[tuple[str, np.ndarray, np.ndarray, float]] = []
    misjudged = _Misjudged(extractor, settings, causes, say)
    for embedder in embedders:
        vectors = embedded.by_model[embedder.model]
        distances = evaluation.pair_distances(vectors, i, vectors, j)
        default = _default(settings, embedder)
        verification = evaluation.verification(
            distances, same, evaluation.seeded_folds(len(same), seed=seed), default_threshold=default
        )
        calibrated = _calibrate(vectors, embedded.paths, found_labels, far, default, seed)
        result = {
            "model": _model(embedder),
            "photos": len(paths),
            "people": len(set(labels)),
            "faces": len(embedded.paths),
            "seconds_per_face": round(embedded.embed_seconds[embedder.model] / max(1, len(embedded.paths)), 5),
            "verification": verification,
            "identification": evaluation.identification(vectors, found_labels),
            "open_set": None,
            "calibration": calibrated,
            "misjudged": misjudged(embedded, embedder, i, j, distances, same, default),
            "no_face": embedded.no_face,
            "failed": [{"path": p, "reason": r} for p, r in embedded.failed],
        }
        if asked is not None:
            result["open_set"] = _open_set(
                embedded.of(embedder.model),
                asked.of(embedder.model),
                calibrated["threshold"],
                default,
            )
        results.append(result)
        curves.append((_model(embedder), distances, same, default))
    if len(embedders) == 1:
        result = results[0]
        if plot:
            _plot(distances, same, _default(settings, embedders[0]), plot, f"{Path(root).name}: {result['model']}")
            result["plot"] = str(plot)
        return result
    if plot:
        try:
            evaluation.plot_models(curves, Path(plot), title=f"{Path(root).name}: {len(paths)} photos")
        except OSError as exc:
            raise FaceDBError(f"{plot}: cannot write the plot: {exc.strerror or exc}") from None
    return {"models": results} | ({"plot": str(plot)} if plot else {})


class _Misjudged:
    """The pairs judged wrong at the default threshold, for each model; with `causes`, why
    (mtcnn, loaded once for all models, looks at their photos again, each photo once)."""

    def __init__(self, extractor: FaceExtractor, settings: Settings, causes: bool, say: Callable[[str], None]):
        self.margin, self.max_pixels, self.causes, self.say = extractor.margin, settings.max_pixels, causes, say
        self._mtcnn: Callable[[np.ndarray], list[Detection]] | None = None
        self._found: dict[str, list[Detection]] = {}

    def __call__(
        self,
        embedded: Embedded,
        embedder: Embedder,
        i: np.ndarray,
        j: np.ndarray,
        distances: np.ndarray,
        same: np.ndarray,
        threshold: float,
    ) -> dict:
        errors = pair_errors.misjudged(embedded.paths, i, j, distances, same, threshold)
        by_cause = None
        if self.causes and errors:
            by_cause = pair_errors.explain(
                errors,
                dict(zip(embedded.paths, embedded.detections)),
                embedder,
                threshold,
                margin=self.margin,
                max_pixels=self.max_pixels,
                tutorial=self.tutorial,
                say=self.say,
            )
        return {
            "threshold": round(float(threshold), 4),
            "pairs": len(errors),
            "same_rejected": sum(e["same"] for e in errors),
            "different_accepted": sum(not e["same"] for e in errors),
            "by_cause": by_cause,
            "listed": errors[: pair_errors.MAX_LISTED],
        }

    def tutorial(self, path: str, rgb: np.ndarray) -> list[Detection]:
        """mtcnn's faces in the photo at `path` (its pixels `rgb`), found once for every model."""
        if path not in self._found:
            if self._mtcnn is None:
                from ..vision.detect import TutorialDetector

                self.say("loading mtcnn's own detector (TensorFlow) to look at misjudged pairs again")
                self._mtcnn = TutorialDetector().detect
            self._found[path] = self._mtcnn(rgb)
        return self._found[path]


def _calibrate(vectors: np.ndarray, paths: list[str], labels: list[str], far: float, default: float, seed: int) -> dict:
    """What `facedb calibrate` would choose with these people enrolled: each person's photos
    searched against everyone else's (the strangers of --strangers are the test, never used)."""
    from ..records import FaceSample
    from .calibrate import calibrate

    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    ids = np.arange(len(paths))
    placed = FaceSample(ids, codes.astype(np.int64), list(paths), vectors)
    nobody = FaceSample(ids[:0], ids[:0], [], vectors[:0])
    result = calibrate(placed, nobody, None, far, default, seed=seed)
    result.pop("closest_impostors")  # face ids of a database that eval has not got
    return result


def _open_set(gallery: Embedded, asked: Embedded, calibrated: float, default: float) -> dict:
    """Every face in the strangers' photos asked against everyone's photos: how many would be named."""
    nearest = (
        np.array([np.linalg.norm(gallery.vectors - v, axis=1).min() for v in asked.vectors])
        if len(gallery.vectors)
        else np.zeros(0)
    )
    n = len(nearest)

    def named(threshold: float) -> dict:
        count = int((nearest <= threshold).sum())
        return {"threshold": round(float(threshold), 4), "named": count, "rate": round(count / n, 4) if n else None}

    return {
        "strangers": n,
        "at_default": named(default),
        "at_calibrated": named(calibrated),
        "nearest_distance_min": round(float(nearest.min()), 4) if n else None,
        "no_face": asked.no_face,
        "failed": [{"path": p, "reason": r} for p, r in asked.failed],
    }


def evaluate_lfw(
    extractor: FaceExtractor,
    settings: Settings,
    pairs_file: str | os.PathLike,
    images: str | os.PathLike,
    *,
    plot: str | os.PathLike | None = None,
    say: Callable[[str], None] = lambda m: None,
    causes: bool = False,
) -> dict:
    """LFW's pairs file and protocol: its pairs, in its folds (10 blocks of pairs.txt); with
    `causes`, each pair misjudged at the default threshold looked at again (pair_errors.py)."""
    _check_plot_target(plot)
    try:
        text = Path(pairs_file).read_text(encoding="utf-8")
        pairs = evaluation.parse_lfw_pairs(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceDBError(f"{pairs_file}: cannot read the pairs file: {exc}") from None
    except ValueError as exc:
        raise FaceDBError(f"{pairs_file}: {exc}") from None
    if not pairs:
        raise FaceDBError(f"{pairs_file}: no pairs")
    header_folds = evaluation.lfw_header_folds(text)
    left = [str(evaluation.lfw_image_path(Path(images), a, m)) for a, m, _, _ in pairs]
    right = [str(evaluation.lfw_image_path(Path(images), b, n)) for _, _, b, n in pairs]
    unique = sorted(set(left) | set(right))
    missing = [p for p in unique if not os.path.isfile(p)]
    say(f"{len(pairs)} pairs over {len(unique)} photos")
    absent = set(missing)
    embedded = embed_photos(extractor, [p for p in unique if p not in absent], settings, say)
    row = {p: k for k, p in enumerate(embedded.paths)}
    usable = np.array([a in row and b in row for a, b in zip(left, right)])
    same = np.array([a == b for a, _, b, _ in pairs])
    folds = evaluation.lfw_folds(len(pairs), header_folds) if header_folds else evaluation.seeded_folds(len(pairs))
    i = np.array([row.get(a, 0) for a in left])
    j = np.array([row.get(b, 0) for b in right])
    if not usable.any():
        raise FaceDBError(
            f"{pairs_file}: no pair has a face in both photos ({len(missing)} photos missing under "
            f"{images}, {len(embedded.no_face)} without a face)"
        )
    distances = evaluation.pair_distances(embedded.vectors, i[usable], embedded.vectors, j[usable])
    default = _default(settings, extractor.embedder)
    verification = evaluation.verification(distances, same[usable], folds[usable], default_threshold=default)
    misjudged = _Misjudged(extractor, settings, causes, say)(
        embedded, extractor.embedder, i[usable], j[usable], distances, same[usable], default
    )
    if plot:
        _plot(
            distances,
            same[usable],
            _default(settings, extractor.embedder),
            plot,
            f"LFW pairs: {_model(extractor.embedder)}",
        )
    return {
        "model": _model(extractor.embedder),
        "pairs_file": str(pairs_file),
        "folds": int(folds.max() + 1),
        "verification": verification,
        "misjudged": misjudged,
        "pairs_skipped": int((~usable).sum()),
        "no_face": embedded.no_face,
        "missing": missing,
        "failed": [{"path": p, "reason": r} for p, r in embedded.failed],
    } | ({"plot": str(plot)} if plot else {})


def _default(settings: Settings, embedder: Embedder) -> float:
    """The threshold a user gets without calibrating (eval opens no database to read one)."""
    if settings.threshold is not None:
        return settings.threshold
    return float(embedder_spec(embedder.model)["default_threshold"])


def _model(embedder: Embedder) -> str:
    return f"{embedder.name} {getattr(embedder, 'version', '')}".strip()
