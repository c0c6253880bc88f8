"""The plain data types that travel between stages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

Box = tuple[float, float, float, float]  # x, y, width, height in original-image pixels
Point = tuple[float, float]


def box_intersection(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))


def box_iou(a: Box, b: Box) -> float:
    inter = box_intersection(a, b)
    union_area = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union_area if union_area > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    box: Box
    # left eye, right eye, nose, mouth left, mouth right (as MTCNN names them)
    landmarks: tuple[Point, Point, Point, Point, Point]
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def scaled(self, factor: float) -> Detection:
        """The same face in pixels `factor` times as many to the side."""
        x, y, w, h = self.box
        landmarks = tuple((px * factor, py * factor) for px, py in self.landmarks)
        return Detection((x * factor, y * factor, w * factor, h * factor), landmarks, self.score)  # type: ignore[arg-type]


@dataclass
class Face:
    detection: Detection
    crop: np.ndarray  # uint8 [size, size, 3], as the embedder wants it
    thumbnail: bytes = b""  # small WebP for people to look at (align.thumbnail)
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def box(self) -> Box:
        return self.detection.box

    @property
    def vector(self) -> np.ndarray:
        """The embedding, which only faces that went through the embedder have."""
        if self.embedding is None:
            raise ValueError("this face has not been embedded yet")
        return self.embedding


class Boxed(Protocol):
    @property
    def box(self) -> Box: ...


FaceT = TypeVar("FaceT", bound=Boxed)


def main_face(faces: Sequence[FaceT], width: int | None, height: int | None) -> FaceT | None:
    """FaceNet's align_dataset_mtcnn rule for a photo of one person: the largest box, less twice
    the squared distance of its centre from the photo's centre (the largest, where the photo's
    size is not known). A larger face cut off at the edge loses to the one in the middle."""
    if not faces:
        return None

    def merit(face: Boxed) -> float:
        x, y, w, h = face.box
        if width is None or height is None:
            return w * h
        return w * h - 2.0 * ((x + w / 2 - width / 2) ** 2 + (y + h / 2 - height / 2) ** 2)

    return max(faces, key=merit)
