"""`facedb bench detect PATH`: the faces facedb's detector finds, against `MTCNN().detect_faces`
at full resolution with mtcnn's default thresholds (what the tutorials run), on the same photos
in the same run, so that every speed change to detection is checked against recall.

Faces are matched one to one by box overlap (IoU >= 0.5, best pairs first). Photos given with
`--no-faces` hold no face: everything found there is a false face.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import FaceDBError, ImageError
from ..faces import Detection
from ..files.images import decode, read_file
from ..files.scan import scan
from ..vision.detect import Detector, MtcnnDetector, TutorialDetector, iou

MATCH_IOU = 0.5


def photo_files(paths: list[str], limit: int | None = None) -> list[str]:
    files = sorted(c.path for c in scan(paths) if c.error is None)
    return files[:limit] if limit else files


def matched(reference: list[Detection], found: list[Detection]) -> list[tuple[int, int]]:
    """One-to-one (reference index, found index) pairs with IoU >= MATCH_IOU, best overlap first."""
    pairs = sorted(((iou(r, f), i, j) for i, r in enumerate(reference) for j, f in enumerate(found)), reverse=True)
    used_r, used_f, result = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i not in used_r and j not in used_f:
            used_r.add(i)
            used_f.add(j)
            result.append((i, j))
    return result


def compare(reference: dict[str, list[Detection]], found: dict[str, list[Detection]]) -> dict:
    """How many of the reference's faces were found again, and what was missed or added."""
    missed, extra, hits = [], [], 0
    for path, faces in reference.items():
        mine = found.get(path, [])
        pairs = matched(faces, mine)
        hits += len(pairs)
        hit_r, hit_f = {i for i, _ in pairs}, {j for _, j in pairs}
        missed += [_face(path, d) for i, d in enumerate(faces) if i not in hit_r]
        extra += [_face(path, d) for j, d in enumerate(mine) if j not in hit_f]
    total = sum(len(v) for v in reference.values())
    return {
        "reference_faces": total,
        "found": hits,
        "recall": round(hits / total, 4) if total else 1.0,
        "missed": missed,
        "extra": extra,
    }


def _face(path: str, detection: Detection) -> dict:
    return {"photo": path, "box": [round(v, 1) for v in detection.box], "score": round(detection.score, 4)}


def _detect_all(
    detector, photos: list[tuple[str, np.ndarray]], method: str = "detect"
) -> tuple[dict[str, list[Detection]], float]:
    detect = getattr(detector, method)
    started = time.perf_counter()
    found = {path: detect(rgb) for path, rgb in photos}
    return found, time.perf_counter() - started


def _decoded(files: list[str], max_pixels: int, failures: list[dict]) -> list[tuple[str, np.ndarray]]:
    photos = []
    for path in files:
        try:
            photos.append((path, decode(read_file(Path(path))[0], max_pixels).rgb))
        except ImageError as exc:
            failures.append({"photo": path, "reason": str(exc)})
    return photos


def run(
    paths: list[str],
    settings: Settings,
    *,
    no_faces: Sequence[str] = (),
    limit: int | None = None,
    detector: Detector | None = None,
    reference: TutorialDetector | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    """Both detectors over the photos one at a time (seconds per photo are comparable)."""
    failures: list[dict] = []
    photos = _decoded(photo_files(paths, limit), settings.max_pixels, failures)
    face_free = _decoded(photo_files(list(no_faces)), settings.max_pixels, failures) if no_faces else []
    if not photos and not face_free:
        raise FaceDBError("no photos to benchmark in " + ", ".join(list(paths) + list(no_faces)))
    detector = detector or MtcnnDetector.from_settings(settings, workers=1)
    reference = reference or TutorialDetector(settings.min_face_size)
    detector.load()
    warm = (photos or face_free)[0][1]
    detector.detect(warm)  # TensorFlow's first calls build kernels: keep them out of the clock
    reference.detect(warm)
    retries_before = dict(getattr(detector, "retries", {}))
    say(f"{len(photos)} photos, {len(face_free)} without faces: mtcnn at full resolution ...")
    every, their_s = _detect_all(reference, photos, "every_box")
    least = reference.min_face_size
    theirs = {path: [d for d in found if min(d.box[2:]) >= least] for path, found in every.items()}
    too_small = {path: [d for d in found if min(d.box[2:]) < least] for path, found in every.items()}
    their_free, their_free_s = _detect_all(reference, face_free)
    say("facedb's detector ...")
    ours, our_s = _detect_all(detector, photos)
    our_free, our_free_s = _detect_all(detector, face_free)
    retries = {k: v - retries_before.get(k, 0) for k, v in getattr(detector, "retries", {}).items()}
    n, m = len(photos), len(face_free)
    result = {
        "photos": n,
        "face_free_photos": m,
        "detector": {
            "detect_max_side": getattr(detector, "max_side", None),
            "min_face_size": getattr(detector, "min_face_size", None),
            "min_score": getattr(detector, "min_score", None),
        },
        "faces": compare(theirs, ours),
        "mtcnn_boxes_under_min_face_size": [_face(p, d) for p, found in too_small.items() for d in found],
        "photos_without_faces": {
            "mtcnn": sorted(p for p, f in theirs.items() if not f),
            "facedb": sorted(p for p, f in ours.items() if not f),
        },
        "false_faces": {
            "mtcnn": [_face(p, d) for p, f in their_free.items() for d in f],
            "facedb": [_face(p, d) for p, f in our_free.items() for d in f],
        },
        "seconds_per_photo": {
            "mtcnn": round(their_s / n, 4) if n else None,
            "facedb": round(our_s / n, 4) if n else None,
            "mtcnn_face_free": round(their_free_s / m, 4) if m else None,
            "facedb_face_free": round(our_free_s / m, 4) if m else None,
        },
        "second_looks": retries,
        "failures": failures,
    }
    return result


def table(result: dict) -> str:
    faces, none, false, seconds = (
        result[k] for k in ("faces", "photos_without_faces", "false_faces", "seconds_per_photo")
    )
    d = result["detector"]
    lines = [
        f"{result['photos']} photos with faces, {result['face_free_photos']} without; facedb detects at <= "
        f"{d['detect_max_side']} px, faces >= {d['min_face_size']} px, score >= {d['min_score']}",
        f"{'':24}{'faces':>7}{'no face in':>12}{'false faces':>13}{'s/photo':>9}",
        f"{'mtcnn, full resolution':24}{faces['reference_faces']:>7}{len(none['mtcnn']):>12}"
        f"{len(false['mtcnn']):>13}{_seconds(seconds['mtcnn']):>9}",
        f"{'facedb':24}{faces['found'] + len(faces['extra']):>7}{len(none['facedb']):>12}"
        f"{len(false['facedb']):>13}{_seconds(seconds['facedb']):>9}",
        f"facedb found {faces['found']} of mtcnn's {faces['reference_faces']} faces ({faces['recall']:.1%}), "
        f"and {len(faces['extra'])} that mtcnn did not",
    ]
    if result["second_looks"]:
        lines.append(
            "second looks: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result["second_looks"].items())
        )
    lines += [f"  missed: {f['photo']} box {f['box']} score {f['score']}" for f in faces["missed"]]
    lines += [
        f"  mtcnn box under {d['min_face_size']} px (not counted): {f['photo']} box {f['box']} score {f['score']}"
        for f in result["mtcnn_boxes_under_min_face_size"]
    ]
    lines += [f"  no face found by facedb: {p}" for p in none["facedb"]]
    lines += [
        f"  false face ({who}): {f['photo']} box {f['box']} score {f['score']}"
        for who in ("facedb", "mtcnn")
        for f in false[who]
    ]
    lines += [f"  failed: {f['photo']}: {f['reason']}" for f in result["failures"]]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
