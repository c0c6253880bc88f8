"""Each model's own distances, measured side by side on the real labelled test photos: how far
a face moves in a copy of its photo (re-encoded, resized, converted: dedup's same face and
people's copies), how close two different photos of one person come, and how close different
people come (the who threshold and clustering's eps must stay under that). The manifest's
per-model values (models/manifest.json) are chosen from these figures.

Run: python benchmarks/model_distances.py [--json FILE]"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from threshold import labelled, strangers

from facedb import FaceDB, Settings
from facedb.vision.weights import embedder_specs, model_distances

COPIES = {
    "jpeg q60": lambda im: _encoded(im, "JPEG", quality=60),
    "jpeg q85, 0.8x": lambda im: _encoded(im.resize(_scaled(im, 0.8), Image.LANCZOS), "JPEG", quality=85),
    "png, 0.6x": lambda im: _encoded(im.resize(_scaled(im, 0.6), Image.LANCZOS), "PNG"),
    "webp q80": lambda im: _encoded(im, "WEBP", quality=80),
}


def _scaled(im: Image.Image, s: float) -> tuple[int, int]:
    return max(1, round(im.width * s)), max(1, round(im.height * s))


def _encoded(im: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    im.save(out, kind, **options)
    return out.getvalue()


def largest(result):
    return max(result.faces, key=lambda f: f.detection.area).vector if result.faces else None


def measure(facedb: FaceDB, model: str) -> dict:
    people = labelled()
    names, vectors, files = [], [], []
    for person, paths in people.items():
        for result in facedb.faces_in(paths, model=model):
            vector = largest(result)
            if vector is not None:
                names.append(person)
                vectors.append(vector)
                files.append(result.path)
    moved = []
    for path, original in zip(files, vectors):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        uploads = [(f"{path}: {kind}", make(rgb)) for kind, make in COPIES.items()]
        for result in facedb.faces_in_uploads(uploads, model=model):
            copy = largest(result)
            if copy is not None:
                moved.append(float(np.linalg.norm(copy - original)))
    same_person, different = [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        d = float(np.linalg.norm(vectors[i] - vectors[j]))
        (same_person if names[i] == names[j] else different).append(d)
    group = [f.vector for r in facedb.faces_in(strangers(), model=model) for f in r.faces]
    different += [float(d) for d in np.linalg.norm(np.array(vectors)[:, None] - np.array(group)[None], axis=-1).ravel()]
    moved_a, same_a, different_a = np.array(moved), np.array(same_person), np.array(different)
    return {
        "model": model,
        "faces": len(names),
        "copy_moved": {
            "n": len(moved),
            "median": np.median(moved_a),
            "p95": np.percentile(moved_a, 95),
            "max": moved_a.max(),
        },
        "same_person_other_photo": {
            "n": len(same_person),
            "min": same_a.min(),
            "median": np.median(same_a),
            "max": same_a.max(),
        },
        "different_people": {"n": len(different), "min": different_a.min(), "p1": np.percentile(different_a, 1)},
        "manifest": model_distances(model).__dict__,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facedb-distances-") as home:
        facedb = FaceDB(Settings.load(home=home))
        figures = [measure(facedb, model) for model in embedder_specs()]
    for f in figures:
        c, s, d = f["copy_moved"], f["same_person_other_photo"], f["different_people"]
        print(
            f"{f['model']} ({f['faces']} faces): a copy moved a face median {c['median']:.3f}, 95th pct {c['p95']:.3f}, "
            f"max {c['max']:.3f} ({c['n']} copies); one person's other photos {s['min']:.3f} .. {s['max']:.3f} "
            f"(median {s['median']:.3f}); different people from {d['min']:.3f} (1st pct {d['p1']:.3f}); "
            f"manifest {f['manifest']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float))


if __name__ == "__main__":
    main()
