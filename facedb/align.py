"""Face crops as FaceNet was trained on them: MTCNN box plus margin, 160x160. Both models get
the same crop (0.2 of the box on each side is the tutorial's 44 px margin at LFW's scale); they
differ in standardisation (embed.py).

FaceNet's own alignment is a crop, not a rotation: the model learned from unrotated crops.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .faces import Detection

CROP_SIZE = 160
THUMBNAIL_SIZE = 96


STANDARDISATIONS = {"fixed": "(x-127.5)/128", "prewhiten": "prewhiten"}


def preprocessing_name(margin: float, standardisation: str = "fixed") -> str:
    """Recorded with every embedding, so embeddings made differently are never mixed up."""
    return f"mtcnn-box+{margin:g}margin/bilinear{CROP_SIZE}/{STANDARDISATIONS[standardisation]}"


def crop_face(rgb: np.ndarray, detection: Detection, margin: float = 0.2, size: int = CROP_SIZE) -> np.ndarray:
    """A square-ish crop around the box, grown by `margin` of the box on every side, clipped to the photo."""
    height, width = rgb.shape[:2]
    x, y, w, h = detection.box
    left = max(0, int(round(x - margin * w)))
    top = max(0, int(round(y - margin * h)))
    right = min(width, int(round(x + w + margin * w)))
    bottom = min(height, int(round(y + h + margin * h)))
    if right - left < 2 or bottom - top < 2:
        left, top, right, bottom = 0, 0, width, height
    region = Image.fromarray(rgb[top:bottom, left:right])
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def standardise(crops: np.ndarray) -> np.ndarray:
    """FaceNet's fixed image standardisation."""
    return (crops.astype(np.float32) - 127.5) / 128.0


def thumbnail(crop: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(crop).resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR).save(
        buffer, "JPEG", quality=85
    )
    return buffer.getvalue()
