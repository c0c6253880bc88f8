"""Face crops as FaceNet was trained on them: MTCNN box plus margin, 160x160. Both models get
the same crop (0.2 of the box on each side is the tutorial's 44 px margin at LFW's scale); they
differ in standardisation (embed.py).

FaceNet's own alignment is a crop, not a rotation: the model learned from unrotated crops.
Where the margin runs past the photo's edge (a face at the edge, a photo the face fills), the
missing part is black, not cut off: cutting it off makes the face larger in the crop, and
stretched when one side is cut, than any face the model learned from. On 20 tight crops of the
labelled photos, against the other photos of the same people, cutting off rejected 103 of 122
same-person pairs at 1.0 and black 15 (replicated edges 38, grey 24, mirrored 15 but with
different people 0.06 nearer); benchmarks/pair_causes.py measures it.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..faces import Detection

CROP_SIZE = 160
THUMBNAIL_SIZE = 96


STANDARDISATIONS = {"fixed": "(x-127.5)/128", "prewhiten": "prewhiten"}


def preprocessing_name(margin: float, standardisation: str = "fixed") -> str:
    """Recorded with every embedding, so embeddings made differently are never mixed up (until
    December 2026 the margin was cut off at the photo's edge: "...margin/bilinear160/...")."""
    return f"mtcnn-box+{margin:g}margin/black-beyond-edge/bilinear{CROP_SIZE}/{STANDARDISATIONS[standardisation]}"


def crop_face(
    rgb: np.ndarray, detection: Detection, margin: float = 0.2, size: int = CROP_SIZE, *, scale: float = 1.0
) -> np.ndarray:
    """The box grown by `margin` of it on every side, black where that runs past the photo.
    `scale`: pixels of `rgb` per pixel of the box (a photo decoded smaller than it is)."""
    height, width = rgb.shape[:2]
    x, y, w, h = (value * scale for value in detection.box)
    left, top = int(round(x - margin * w)), int(round(y - margin * h))
    right, bottom = int(round(x + w + margin * w)), int(round(y + h + margin * h))
    inside = max(0, left), max(0, top), min(width, right), min(height, bottom)
    if inside[2] - inside[0] < 2 or inside[3] - inside[1] < 2:  # nothing of the box in the photo
        left, top, right, bottom = 0, 0, width, height
        inside = (0, 0, width, height)
    region = np.zeros((bottom - top, right - left, 3), np.uint8)
    region[inside[1] - top : inside[3] - top, inside[0] - left : inside[2] - left] = rgb[
        inside[1] : inside[3], inside[0] : inside[2]
    ]
    return np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def standardise(crops: np.ndarray) -> np.ndarray:
    """FaceNet's fixed image standardisation."""
    return (crops.astype(np.float32) - 127.5) / 128.0


def thumbnail(crop: np.ndarray) -> bytes:
    """The face for people to look at, 96 px WebP: 1.2 kB a face on the test photos against
    2.8 kB as JPEG at quality 85 (faces stored before December 2026 keep their JPEG)."""
    buffer = io.BytesIO()
    Image.fromarray(crop).resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR).save(
        buffer, "WEBP", quality=75
    )
    return buffer.getvalue()


def thumbnail_media_type(data: bytes) -> str:
    """image/webp or image/jpeg (older thumbnails), from the bytes."""
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else "image/jpeg"
