"""Photos with their faces boxed and labelled, for people who would rather look than read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .results import FaceAnswer

KNOWN = (46, 204, 113)
UNKNOWN = (231, 76, 60)


def annotate(rgb, faces: Sequence[FaceAnswer], out_path: Path) -> Path:
    """Writes the photo with each face boxed and named as a JPEG and returns its path."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 400))
    try:
        font = ImageFont.load_default(size=max(12, round(max(image.size) / 50)))
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    for face in faces:
        x, y, w, h = face.box
        colour = UNKNOWN if face.unknown else KNOWN
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=line)
        label = "unknown" if face.unknown else str(face.identity)
        if face.distance is not None:
            label += f" ({face.distance:.2f})"
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        label_top = max(0, y - (bottom - top) - 2 * line)
        draw.rectangle(
            [x, label_top, x + (right - left) + 2 * line, label_top + (bottom - top) + 2 * line], fill=colour
        )
        draw.text((x + line, label_top + line - (top - y)), label, fill=(255, 255, 255), font=font)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_path, "JPEG", quality=90)
    return out_path
