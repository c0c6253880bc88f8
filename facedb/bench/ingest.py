"""`facedb bench ingest PATH`: indexing throughput on real photos, with two references measured
in the same run on the same photos:

(a) the FaceNet tutorial's way: every photo detected at full resolution (MTCNN's default
    minimum face of 20 px), then every face embedded alone (batch 1), one after another, all
    on TensorFlow as the tutorial runs it;
(b) the stage limits: facedb's detection alone over the photos, and embedding alone in large
    batches over the same crops. On a CPU both stages use every core, so their times add up:
    photos / (detect + embed) is the best any pipeline of these two models can do here. With
    the embedder on a GPU the limit would be photos / max(detect, embed) instead.

Then facedb itself indexes the photos into a fresh embedded database, end to end, on its
runtime, and again on the other one (ONNX Runtime and TensorFlow) into another fresh database:
the same photos, the same run.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..api import FaceDB
from ..config import Settings
from ..errors import FaceDBError, ImageError
from ..files.images import decode, read_file
from ..vision.align import crop_face
from ..vision.detect import MtcnnDetector, TutorialDetector
from ..vision.embed import Embedder, FacenetEmbedder
from .detect import compare, photo_files

LARGE_BATCH = 64


def _decoded(files: list[str], max_pixels: int):
    for path in files:
        item = _decode_or_none(path, max_pixels)
        if item is not None:  # not a photo: every contender skips it alike
            yield item


def tutorial_reference(
    files: list[str], detector: TutorialDetector, embedder: Embedder, margin: float, max_pixels: int
) -> dict:
    """(a): full-resolution detection, then batch-1 embedding, photo after photo (decode included)."""
    started = time.perf_counter()
    faces, boxes = 0, {}
    for path, photo in _decoded(files, max_pixels):
        detections = detector.detect(photo.rgb)
        boxes[path] = detections
        for detection in detections:
            embedder.embed(crop_face(photo.rgb, detection, margin)[None])
            faces += 1
    return {"seconds": time.perf_counter() - started, "faces": faces, "boxes": boxes}


def stage_limits(
    files: list[str], detector: MtcnnDetector, embedder: Embedder, margin: float, max_pixels: int, chunk: int = 16
) -> dict:
    """(b): each stage alone, at its best on this machine: detection with as many photos at
    once as facedb detects, embedding in batches of 64. Photos are decoded a chunk at a time
    (timed, but not part of the limit: facedb overlaps decoding with detection)."""
    decode_s = detect_s = align_s = 0.0
    crops: list[np.ndarray] = []
    boxes: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=detector.workers) as pool:
        for start in range(0, len(files), chunk):
            clock = time.perf_counter()
            decoded = [
                item
                for item in pool.map(_decode_or_none, files[start : start + chunk], [max_pixels] * chunk)
                if item is not None
            ]
            decode_s += time.perf_counter() - clock
            clock = time.perf_counter()
            found = list(pool.map(lambda item: detector.detect(item[1].rgb), decoded))
            detect_s += time.perf_counter() - clock
            clock = time.perf_counter()
            for (path, photo), detections in zip(decoded, found):
                crops.extend(crop_face(photo.rgb, d, margin) for d in detections)
                boxes[path] = detections
            align_s += time.perf_counter() - clock
    started = time.perf_counter()
    for start in range(0, len(crops), LARGE_BATCH):
        embedder.embed(np.stack(crops[start : start + LARGE_BATCH]))
    embed_s = time.perf_counter() - started
    return {
        "read_decode_s": decode_s,
        "detect_s": detect_s,
        "align_s": align_s,
        "embed_s": embed_s,
        "faces": len(crops),
        "boxes": boxes,
    }


def _decode_or_none(path: str, max_pixels: int):
    try:
        data, _ = read_file(Path(path))
        return path, decode(data, max_pixels)
    except ImageError:
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    paths: list[str],
    settings: Settings,
    *,
    limit: int | None = None,
    say: Callable[[str], None] = print,
    detector: MtcnnDetector | None = None,
    embedder: Embedder | None = None,
    database_url: str | None = None,
    other_runtime_url: str | None = None,
    compare_runtimes: bool = True,
) -> dict:
    """facedb indexes into `database_url`, which must be an empty database, or by default into
    a new embedded one in a temporary folder; with `compare_runtimes`, once more on the other
    runtime into `other_runtime_url` (or another new embedded one). Models given here are used
    as they are."""
    files = photo_files(paths, limit)
    if not files:
        raise FaceDBError("no photos to benchmark in " + ", ".join(paths))
    for path in files:  # every contender then reads from the page cache alike
        Path(path).read_bytes()
    with tempfile.TemporaryDirectory(prefix="facedb-bench-") as home:
        facedb = FaceDB(
            replace(settings, home=Path(home), database_url=database_url), detector=detector, embedder=embedder
        )
        if not isinstance(facedb.detector, MtcnnDetector):
            raise FaceDBError("bench ingest measures facedb's own MTCNN detector")
        detector, embedder = facedb.detector, facedb.embedder
        started = time.perf_counter()
        detector.load()
        embedder.load()
        model_load_s = time.perf_counter() - started
        # TensorFlow's first calls build kernels; keep that out of every contender.
        with ThreadPoolExecutor(max_workers=detector.workers) as pool:
            for _, photo in _decoded(files[:1], settings.max_pixels):
                list(pool.map(detector.detect, [photo.rgb] * detector.workers))
        embedder.embed(np.zeros((LARGE_BATCH, 160, 160, 3), np.uint8))
        embedder.embed(np.zeros((1, 160, 160, 3), np.uint8))
        full_resolution = TutorialDetector(settings.min_face_size)
        tutorial_embedder = FacenetEmbedder(settings.model_cache, 1, runtime="tensorflow")
        for _, photo in _decoded(files[:1], settings.max_pixels):
            full_resolution.detect(photo.rgb)
        tutorial_embedder.embed(np.zeros((1, 160, 160, 3), np.uint8))

        say(f"{len(files)} photos; (a) tutorial: full-resolution detection, batch-1 embedding ...")
        tutorial = tutorial_reference(
            files, full_resolution, tutorial_embedder, settings.face_margin, settings.max_pixels
        )
        say("(b) stage limits: detection alone, embedding alone in batches of 64 ...")
        limits = stage_limits(files, detector, embedder, settings.face_margin, settings.max_pixels)
        say("facedb index, end to end, into a fresh embedded database ...")
        facedb.status()  # start the database outside the clock
        summary = facedb.index(files)
        facedb.close()
        runtimes = {detector.runtime: _indexed(summary, n_files := len(files), model_load_s)}
        if compare_runtimes:
            other = "tensorflow" if settings.runtime == "onnxruntime" else "onnxruntime"
            say(f"facedb index again on {other}, into another fresh database ...")
            with tempfile.TemporaryDirectory(prefix="facedb-bench-") as other_home:
                other_settings = replace(settings, home=Path(other_home), database_url=other_runtime_url, runtime=other)
                other_detector = MtcnnDetector.from_settings(other_settings, workers=detector.workers)
                again = FaceDB(other_settings, detector=other_detector)
                started = time.perf_counter()
                again.extractor.load()
                load_s = time.perf_counter() - started
                with ThreadPoolExecutor(max_workers=other_detector.workers) as pool:  # as for the first
                    for _, photo in _decoded(files[:1], settings.max_pixels):
                        list(pool.map(other_detector.detect, [photo.rgb] * other_detector.workers))
                again.embedder.embed(np.zeros((LARGE_BATCH, 160, 160, 3), np.uint8))
                again.status()
                runtimes[again.detector.runtime] = _indexed(again.index(files), n_files, load_s)
                again.close()

    n = len(files)
    detection = compare(tutorial["boxes"], limits["boxes"])
    limit_s = limits["detect_s"] + limits["embed_s"]
    result = {
        "photos": n,
        "detect_max_side": settings.detect_max_side,
        "detect_workers": detector.workers,
        "min_face_size": settings.min_face_size,
        "model_load_s": round(model_load_s, 2),
        "tutorial": {
            "seconds": round(tutorial["seconds"], 2),
            "photos_per_s": round(n / tutorial["seconds"], 3),
            "faces": tutorial["faces"],
            "faces_per_s": round(tutorial["faces"] / tutorial["seconds"], 3),
        },
        "stage_limit": {k: round(v, 2) for k, v in limits.items() if k.endswith("_s")}
        | {
            "faces": limits["faces"],
            "photos_per_s": round(n / limit_s, 3),
            "photos_per_s_if_embedding_had_its_own_device": round(n / max(limits["detect_s"], limits["embed_s"]), 3),
        },
        "facedb": {
            "seconds": round(summary.seconds, 2),
            "photos_per_s": round(n / summary.seconds, 3),
            "faces": summary.faces,
            "faces_per_s": round(summary.faces / summary.seconds, 3),
            "failed": summary.failed,
            "stage_busy_s": summary.stage_seconds,
        },
        "speedup_over_tutorial": round(tutorial["seconds"] / summary.seconds, 2),
        "share_of_stage_limit": round(limit_s / summary.seconds, 3),
        "detection": detection,
        "runtimes": runtimes,
        "peak_rss_mb": round(peak_rss_mb()),
    }
    return result


def _indexed(summary, photos: int, model_load_s: float) -> dict:
    return {
        "model_load_s": round(model_load_s, 2),
        "seconds": round(summary.seconds, 2),
        "photos_per_s": round(photos / summary.seconds, 3),
        "faces": summary.faces,
        "faces_per_s": round(summary.faces / summary.seconds, 3),
    }


def table(result: dict) -> str:
    t, b, f, d = result["tutorial"], result["stage_limit"], result["facedb"], result["detection"]
    lines = [
        f"{result['photos']} photos; facedb detects at <= {result['detect_max_side']} px, faces >= "
        f"{result['min_face_size']} px, {result['detect_workers']} photos at once; models loaded in "
        f"{result['model_load_s']} s (not counted)",
        f"{'':34}{'seconds':>9}{'photos/s':>10}{'faces':>7}{'faces/s':>9}",
        f"{'(a) tutorial (full res, batch 1)':34}{t['seconds']:>9.1f}{t['photos_per_s']:>10.3f}{t['faces']:>7}"
        f"{t['faces_per_s']:>9.2f}",
        f"{'(b) stage limit (detect + embed)':34}{b['detect_s'] + b['embed_s']:>9.1f}{b['photos_per_s']:>10.3f}"
        f"{b['faces']:>7}",
        f"{'facedb index, end to end':34}{f['seconds']:>9.1f}{f['photos_per_s']:>10.3f}{f['faces']:>7}"
        f"{f['faces_per_s']:>9.2f}",
        f"stages alone: read+decode {b['read_decode_s']:.1f} s, detect {b['detect_s']:.1f} s, align {b['align_s']:.1f} s, "
        f"embed {b['embed_s']:.1f} s (batches of {LARGE_BATCH})",
        "facedb busy time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in f["stage_busy_s"].items()),
        f"facedb is {result['speedup_over_tutorial']}x the tutorial (target >= 5x) and "
        f"{result['share_of_stage_limit']:.0%} of the stage limit (target >= 80%)",
        f"faces: facedb found {d['found']} of the {d['reference_faces']} the tutorial found ({d['recall']:.1%}) and "
        f"{len(d['extra'])} more"
        + "".join(f"\n  missed: {m['photo']} box {m['box']} score {m['score']}" for m in d["missed"]),
        *(
            f"facedb index on {runtime}: {r['seconds']:.1f} s, {r['photos_per_s']:.3f} photos/s, "
            f"{r['faces_per_s']:.2f} faces/s (models loaded in {r['model_load_s']} s)"
            for runtime, r in result["runtimes"].items()
        ),
        f"peak RSS {result['peak_rss_mb']} MB",
    ]
    return "\n".join(lines)
