"""Photos with their faces boxed and labelled, for people who would rather look than read."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .results import FaceAnswer

KNOWN = (46, 204, 113)
UNKNOWN = (231, 76, 60)


def annotate(rgb, faces: Sequence[FaceAnswer], out_path: Path, scale: float = 1.0) -> Path:
    """Writes the photo with each face boxed and named as a JPEG and returns its path.
    `scale`: pixels of `rgb` per pixel of the boxes (a photo decoded smaller than it is)."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 400))
    try:
        font = ImageFont.load_default(size=max(12, round(max(image.size) / 50)))
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    for face in faces:
        x, y, w, h = (value * scale for value in face.box)
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


def contact_sheet(title: str, faces: Sequence[tuple[int, bytes | None, str]], out_path: Path, columns: int = 8) -> Path:
    """A sheet of face thumbnails (face id, WebP or JPEG or None, caption), each with its id and
    caption under it and the title on top; written as PNG (or whatever out_path's suffix says)."""
    cell, text_height, pad = 128, 34, 8
    rows = max(1, -(-len(faces) // columns))
    width = pad + columns * (cell + pad)
    sheet = Image.new("RGB", (width, 40 + rows * (cell + text_height + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    draw.text((pad, 10), title, fill=(30, 30, 30), font=_font(18))
    for index, (face_id, jpeg, caption) in enumerate(faces):
        x = pad + (index % columns) * (cell + pad)
        y = 40 + (index // columns) * (cell + text_height + pad)
        if jpeg:
            with Image.open(io.BytesIO(jpeg)) as thumbnail:
                face = thumbnail.convert("RGB")
                face.thumbnail((cell, cell))
                sheet.paste(face, (x + (cell - face.width) // 2, y + (cell - face.height) // 2))
        else:
            draw.rectangle([x, y, x + cell, y + cell], outline=(200, 200, 200))
        draw.text((x, y + cell + 2), f"face {face_id}", fill=(30, 30, 30), font=font)
        draw.text((x, y + cell + 17), caption[:18], fill=(110, 110, 110), font=font)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()
