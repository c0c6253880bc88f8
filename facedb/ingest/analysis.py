"""One photo through the model stages: decode -> detect -> align (-> the names its XMP face
tags give its faces), not yet embedded. The local indexer's threads and Ray's workers both run
it, so a photo is analysed the same way wherever it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import FaceDBError, ImageError, one_line
from ..faces import Detection, Face
from ..files.face_tags import FaceTagError, match, read_tags
from ..files.images import DecodedPhoto, PhotoMeta, decode
from ..names import person_name
from ..records import Failed, FileStat, Indexed
from ..results import FileWarning
from ..vision.align import crop_face, thumbnail
from ..vision.detect import Detector
from ..vision.embed import Embedder

R = TypeVar("R")


class StageClock:
    """Busy seconds per stage, summed over the threads that run it (so stages that overlap
    can add up to more than the wall time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage: str, function: Callable[..., R], *args) -> R:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.add(stage, time.perf_counter() - started)


class FaceExtractor:
    """detect -> align -> embed for decoded photos: the model part of the pipeline."""

    def __init__(self, detector: Detector, embedder: Embedder, margin: float) -> None:
        self.detector = detector
        self.embedder = embedder
        self.margin = margin

    def load(self) -> float:
        """Load both models now (they load lazily otherwise); returns the seconds it took."""
        started = time.monotonic()
        self.detector.load()
        self.embedder.load()
        return time.monotonic() - started

    def faces_in(self, photo: DecodedPhoto) -> list[Face]:
        """Detect and crop (not yet embedded)."""
        return self.align(photo, self.detect(photo))

    def detect(self, photo: DecodedPhoto) -> list[Detection]:
        """The photo's faces, in its own pixels (also where it was decoded smaller)."""
        found = self.detector.detect(photo.rgb)
        return found if photo.scale == 1.0 else [d.scaled(1 / photo.scale) for d in found]

    def align(self, photo: DecodedPhoto, detections: list[Detection]) -> list[Face]:
        """Crops of the faces at `detections` (in the photo's own pixels)."""
        faces = []
        for detection in detections:
            crop = crop_face(photo.rgb, detection, self.margin, scale=photo.scale)
            faces.append(Face(detection=detection, crop=crop, thumbnail=thumbnail(crop)))
        return faces

    def embed(self, faces: list[Face]) -> None:
        """Embed all the faces in large batches (far faster per face than one at a time)."""
        if not faces:
            return
        vectors = self.embedder.embed(np.stack([face.crop for face in faces]))
        for face, vector in zip(faces, vectors):
            face.embedding = vector


def analyse_photo(
    extractor: FaceExtractor,
    stat: FileStat,
    data: bytes,
    pixel_limits: tuple[int, int | None],
    read_face_tags: bool,
    clock: StageClock,
    within: Sequence[Path] | None = None,
) -> tuple[Failed | Indexed, list[FileWarning]]:
    """decode -> detect -> crop (-> the face tags of its XMP) of one photo, not yet embedded; the
    full-resolution pixels are gone when it returns. Used by the local indexer and by Ray's workers.
    `pixel_limits`: decode's max_pixels and max_decoded_pixels. `within`: the folders its
    sidecars must really lie in, as the photo must."""
    try:
        photo = clock.timed("decode", decode, data, *pixel_limits)
    except ImageError as exc:
        return Failed(stat, str(exc)), []
    try:
        detections = clock.timed("detect", extractor.detect, photo)
        faces = clock.timed("align", extractor.align, photo, detections)
    except Exception as exc:  # noqa: BLE001 - one odd photo must not stop the run
        return Failed(stat, f"face detection failed: {type(exc).__name__}: {exc}"[:300]), []
    tagged: dict[int, str] = {}
    warnings: list[FileWarning] = []
    if read_face_tags:
        tagged, warnings = clock.timed("tags", face_tags_of, stat.path, data, photo.meta, faces, within)
    return Indexed(stat, photo.meta, faces, tagged), warnings


def face_tags_of(
    path: str, data: bytes, meta: PhotoMeta, faces: list[Face], within: Sequence[Path] | None = None
) -> tuple[dict[int, str], list[FileWarning]]:
    """The names the photo's XMP face tags give its faces (by their place in `faces`); a tag
    on no detected face, or XMP that cannot be read, is a warning: the photo is indexed."""
    try:
        tags = read_tags(data, Path(path), meta.orientation, meta.width, meta.height, within)
    except FaceTagError as exc:
        return {}, [FileWarning(path=path, message=str(exc))]
    except Exception as exc:  # noqa: BLE001 - odd metadata must not cost the photo or the run
        return {}, [FileWarning(path=path, message=one_line(f"face tags not read: {type(exc).__name__}: {exc}")[:300])]
    named, unmatched = match(tags, [(place, face.box) for place, face in enumerate(faces)])
    warnings = []
    for place, name in list(named.items()):
        try:
            named[place] = person_name(name)
        except FaceDBError as exc:  # the same rule as a name typed in: the face stays unnamed
            del named[place]
            shown = name[:80] + ("..." if len(name) > 80 else "")
            warnings.append(FileWarning(path=path, message=f"face tag {shown!r} not taken: {exc}"))
    for tag in unmatched:
        x, y, w, h = (round(v) for v in tag.box)
        message = f"face tag {tag.name!r} ({tag.found_in}) at {x},{y} {w}x{h} names no detected face"
        warnings.append(FileWarning(path=path, message=message))
    return named, warnings
