"""Second, false faces in photos of one person: facedb's detector against `MTCNN().detect_faces`
at full resolution, on the same photos in the same run (not a test).

    python benchmarks/portrait_faces.py [--json FILE]

The photos: every registry photo of one person (the labelled people, the strangers, the
portraits), each as it is, shrunk to 180 and 300 px, enlarged to 2400 and 4000 px (where
facedb detects on a 640 px copy and looks again at full resolution), and framed as LFW frames
its photos (250 px). Prints every photo where either found more than one face, or none."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedb import samples as photos  # noqa: E402
from facedb.config import Settings  # noqa: E402
from facedb.vision.detect import MtcnnDetector, TutorialDetector  # noqa: E402


def variants(image: Image.Image):
    w, h = image.size
    yield "as it is", image
    for side in (180, 300):
        small = image.copy()
        small.thumbnail((side, side), Image.Resampling.BILINEAR)
        yield f"{side} px", small
    for side in (2400, 4000):
        scale = side / max(w, h)
        if scale > 1.05:
            yield f"{side} px", image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    yield "250 px", image.resize((250, round(250 * h / w)) if w >= h else (round(250 * w / h), 250))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    singles = photos.one_person_photos()
    settings = Settings.load()
    ours = MtcnnDetector.from_settings(settings, workers=1)
    ours.load()
    theirs = TutorialDetector(settings.min_face_size)
    rows = []
    for name in singles:
        image = ImageOps.exif_transpose(Image.open(photos.path(name))).convert("RGB")
        for label, variant in variants(image):
            rgb = np.asarray(variant)
            found = {"facedb": ours.detect(rgb), "mtcnn": theirs.detect(rgb)}
            row = {
                "photo": name,
                "variant": label,
                **{k: [[round(v) for v in d.box] + [round(d.score, 3)] for d in faces] for k, faces in found.items()},
            }
            rows.append(row)
            if any(len(faces) != 1 for faces in found.values()):
                print(f"{name} {label}: facedb {row['facedb']}  mtcnn {row['mtcnn']}")
    summary = {
        "photos": len(rows),
        **{f"{k}_second_face": sum(len(r[k]) > 1 for r in rows) for k in ("facedb", "mtcnn")},
        **{f"{k}_no_face": sum(not r[k] for r in rows) for k in ("facedb", "mtcnn")},
    }
    print(
        f"{summary['photos']} photos of one person: a second face from facedb in {summary['facedb_second_face']}, "
        f"from mtcnn in {summary['mtcnn_second_face']}; no face from facedb in {summary['facedb_no_face']}, "
        f"from mtcnn in {summary['mtcnn_no_face']}"
    )
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "photos": rows}))


if __name__ == "__main__":
    main()
