"""Writes the hard detection cases derived from the test photos into a folder, for
`facedb bench detect`: tight face crops (150 x 150, the face filling the frame), portraits
downscaled to 300 and 180 px, and a 1920 x 1280 photo of twelve 26-34 px faces.

    python benchmarks/hard_detection_set.py OUT
    facedb bench detect OUT/tight OUT/small OUT/small_faces --no-faces <face-free photos>
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from facedb import samples as photos
from facedb.files.images import decode  # noqa: E402
from facedb.vision.detect import TutorialDetector  # noqa: E402


def main(out: Path) -> None:
    mtcnn = TutorialDetector()
    for folder in ("tight", "small", "small_faces"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    faces = []
    for name in photos.PORTRAITS:
        rgb = decode(photos.path(name).read_bytes()).rgb
        box = max(mtcnn.detect(rgb), key=lambda d: d.area).box
        faces.append((rgb, box))
        stem = Path(name).stem
        Image.fromarray(photos.tight_crop(rgb, box)).save(out / "tight" / f"{stem}.png")
        for side in (300, 180):
            Image.fromarray(photos.small_portrait(name, side)).save(out / "small" / f"{stem}_{side}.png")
    Image.fromarray(photos.small_faces_canvas(faces)).save(out / "small_faces" / "twelve_small_faces.png")
    print(f"wrote {out}: {len(faces)} tight crops, {2 * len(faces)} small portraits, 1 photo of small faces")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
