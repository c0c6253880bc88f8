"""Plain records that cross between indexing, search and the database, and the words the
stored data uses. No behaviour, no imports from above: every layer may use them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .faces import Face
from .files.images import PhotoMeta

INDEXED, FAILED = PHOTO_STATUSES = ("indexed", "failed")
# Set by a person (never undone by clustering) and set by the system (recomputed by clustering).
HUMAN_SOURCES = ("enrolled", "confirmed")
SYSTEM_SOURCES = ("proposed", "clustered")


@dataclass(frozen=True)
class KnownFile:
    id: int
    size: int | None
    mtime_ns: int | None
    status: str
    content_hash: str | None


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None


# What indexing decided about one file; the store writes a batch of them in one transaction.
@dataclass(frozen=True)
class Indexed:
    file: FileStat
    meta: PhotoMeta
    faces: list[Face]
    tagged: dict[int, str] = field(default_factory=dict)  # face's place in `faces` -> name its XMP gives


@dataclass(frozen=True)
class Failed:
    file: FileStat
    reason: str


@dataclass(frozen=True)
class CopyOf:
    """Same bytes as an indexed photo: reuse its faces instead of running the models again."""

    file: FileStat
    source_id: int


@dataclass(frozen=True)
class Moved:
    """Same bytes as an indexed photo whose old path is gone: keep its row, faces and names."""

    file: FileStat
    photo_id: int


@dataclass(frozen=True)
class Touched:
    """Path known, bytes unchanged, only size/mtime bookkeeping differs."""

    file: FileStat
    photo_id: int


Outcome = Indexed | Failed | CopyOf | Moved | Touched


@dataclass(frozen=True)
class NearestIdentity:
    identity_id: int
    name: str | None
    distance: float
    face_id: int
    source: str


@dataclass(frozen=True)
class StoredFace:
    id: int
    photo_id: int
    box: tuple[float, float, float, float]
    score: float


@dataclass
class FaceSample:
    """Faces for calibration: ids, their identity (-1: none), their photo's bytes, vectors."""

    face_ids: np.ndarray
    identity_ids: np.ndarray
    content_hashes: list[str | None]
    vectors: np.ndarray
