"""Why `facedb eval` misjudged a pair. Every pair judged wrong at the default threshold is
listed; with causes asked, each of its two photos is looked at again the way FaceNet's LFW
validation does it (`MTCNN().detect_faces` at full resolution, the same choice of face,
`align_dataset_mtcnn --margin 32`: the box plus 16 px on each side), one stage at a time, and
the pair gets the first stage whose swap alone judges it right:

1. "face not found by mtcnn": mtcnn finds no face in a photo that facedb found one in (a
   tight crop, found inside a border): the tutorial would have skipped this pair.
2. "face chosen": the two detectors' chosen faces are different faces (IoU < 0.5).
3. "detection box": the tutorial's box of the same face, cropped as facedb crops, judges it right.
4. "crop and margin": facedb's box cropped with the tutorial's margin judges it right.
5. "small face": none of these helps and a face is under SMALL_FACE px (its crop is upscaled).
6. "the model": none of these helps; the model itself places the two faces so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..faces import Detection, box_iou, main_face
from ..files.images import decode, read_file
from ..vision.align import crop_face
from ..vision.embed import Embedder

CAUSES = (
    "face not found by mtcnn",
    "face chosen",
    "detection box",
    "crop and margin",
    "small face",
    "the model",
)
SMALL_FACE = 60  # px, the box's shorter side: the crop is upscaled almost 3x to 160 px
TUTORIAL_MARGIN = 32  # px in all, half on each side: FaceNet's LFW alignment at 160 px
SAME_FACE_IOU = 0.5
MAX_EXPLAINED = 200  # pairs looked at again (each costs two full-resolution detections)
MAX_LISTED = 1000


@dataclass(frozen=True)
class Views:
    """One photo's face embedded with one stage of the tutorial's in place of facedb's: its box
    (cropped as facedb crops), its crop (of facedb's box), and both."""

    tutorial_box: np.ndarray | None
    tutorial_crop: np.ndarray
    tutorial: np.ndarray | None
    same_face: bool  # the tutorial chose the face facedb chose
    face_px: int


def misjudged(
    paths: Sequence[str], i: np.ndarray, j: np.ndarray, distances: np.ndarray, same: np.ndarray, threshold: float
) -> list[dict]:
    """The pairs judged wrong when d <= threshold means the same person, as who judges."""
    wrong = np.flatnonzero((distances <= threshold) != same)
    return [
        {"left": paths[i[k]], "right": paths[j[k]], "same": bool(same[k]), "distance": round(float(distances[k]), 4)}
        for k in wrong
    ]


def tutorial_crop(rgb: np.ndarray, detection: Detection, margin: int = TUTORIAL_MARGIN, size: int = 160) -> np.ndarray:
    """align_dataset_mtcnn's crop: the box plus margin/2 px on each side, clipped, resized."""
    height, width = rgb.shape[:2]
    x, y, w, h = detection.box
    left, top = int(max(x - margin / 2, 0)), int(max(y - margin / 2, 0))
    right, bottom = int(min(x + w + margin / 2, width)), int(min(y + h + margin / 2, height))
    region = Image.fromarray(rgb[top:bottom, left:right])
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def cause_of(
    threshold: float,
    same: bool,
    left: Views,
    right: Views,
) -> tuple[str, dict[str, float | None]]:
    """The first stage whose swap alone judges the pair right, and the distance with each swap."""

    def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
        return None if a is None or b is None else round(float(np.linalg.norm(a - b)), 4)

    distances = {
        "tutorial_box": distance(left.tutorial_box, right.tutorial_box),
        "tutorial_crop": distance(left.tutorial_crop, right.tutorial_crop),
        "tutorial": distance(left.tutorial, right.tutorial),
    }

    def right_with(key: str) -> bool:
        d = distances[key]
        return d is not None and (d <= threshold) == same

    if left.tutorial is None or right.tutorial is None:
        return "face not found by mtcnn", distances
    if not (left.same_face and right.same_face):
        return "face chosen", distances
    if right_with("tutorial_box"):
        return "detection box", distances
    if right_with("tutorial_crop"):
        return "crop and margin", distances
    if min(left.face_px, right.face_px) < SMALL_FACE:
        return "small face", distances
    return "the model", distances


def explain(
    errors: list[dict],
    chosen: dict[str, Detection],
    embedder: Embedder,
    threshold: float,
    *,
    margin: float,
    max_pixels: int,
    tutorial: Callable[[str, np.ndarray], list[Detection]],
    say: Callable[[str], None] = lambda m: None,
) -> dict[str, int]:
    """Adds "cause", "distances" and "face_px" to the first MAX_EXPLAINED errors (a photo that
    cannot be read again leaves its pairs without a cause); returns the count per cause.
    `chosen` holds facedb's face of each photo, `tutorial(path, rgb)` detects as the tutorial does."""
    looked_at = errors[:MAX_EXPLAINED]
    photos = sorted({e[side] for e in looked_at for side in ("left", "right")})
    say(f"looking again at the {len(photos)} photos of {len(looked_at)} misjudged pairs the tutorial's way")
    views = {path: _views(path, chosen[path], embedder, margin, max_pixels, tutorial) for path in photos}
    counts = dict.fromkeys(CAUSES, 0)
    for error in looked_at:
        left, right = views[error["left"]], views[error["right"]]
        if left is None or right is None:
            continue
        cause, distances = cause_of(threshold, error["same"], left, right)
        error.update(cause=cause, distances=distances, face_px=[left.face_px, right.face_px])
        counts[cause] += 1
    return counts


def _views(
    path: str,
    ours: Detection,
    embedder: Embedder,
    margin: float,
    max_pixels: int,
    tutorial: Callable[[str, np.ndarray], list[Detection]],
) -> Views | None:
    try:
        rgb = decode(read_file(Path(path))[0], max_pixels).rgb
    except (ImageError, OSError):  # read once already: gone or changed since
        return None
    theirs = main_face(tutorial(path, rgb), rgb.shape[1], rgb.shape[0])
    crops = [tutorial_crop(rgb, ours)]
    if theirs is not None:
        crops += [crop_face(rgb, theirs, margin), tutorial_crop(rgb, theirs)]
    vectors = embedder.embed(np.stack(crops))
    return Views(
        tutorial_crop=vectors[0],
        tutorial_box=vectors[1] if theirs is not None else None,
        tutorial=vectors[2] if theirs is not None else None,
        same_face=theirs is not None and box_iou(ours.box, theirs.box) >= SAME_FACE_IOU,
        face_px=int(round(min(ours.box[2:]))),
    )
