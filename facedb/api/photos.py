"""FaceDB's photos facet: faces of photos that are not stored (compare, who's input), indexing
and enrolment, and face tags written back as XMP."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import FaceDBError, ImageError, TooLarge
from ..faces import main_face
from ..files.images import decode, pixel_count, read_file
from ..files.scan import scan
from ..ingest.pipeline import FailureCallback, ProgressCallback
from ..names import person_name
from ..results import (
    CompareAnswer,
    ComparedFace,
    EnrollResult,
    FileFailure,
    FileWarning,
    IndexSummary,
    PhotoError,
    PhotoFaces,
    TagsWritten,
    WatchRound,
)
from .parts import Parts


class Photos(Parts):
    def watch(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        settle: float = 2.0,
        rescan_every: float = 600.0,
        batch: int = 256,
        on_round: Callable[[WatchRound], None] | None = None,
        on_failure: FailureCallback | None = None,
        on_warning: FailureCallback | None = None,
        read_face_tags: bool | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Keep the folders `paths` indexed (the first round is a rescan of them all) until `stop` is set (or SIGINT/SIGTERM when it is
        None): photos that arrive or change are indexed as `index` does (a moved photo keeps its
        faces and people), photos that go are forgotten with their faces. Each round is whole
        (`index` stores a batch in one transaction) before a stop is taken. A photo missing
        together with its folder at a rescan is kept (a disk that is not mounted is not a
        deletion); so is everything under a watched folder that is itself missing."""
        from ..ingest.watch import StopOnSignal, watch

        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        for root in roots:
            if not os.path.isdir(root):
                raise FaceDBError(f"{root}: not a folder (--watch watches folders)")

        def handle(changed) -> None:
            present = [p for p in changed.present if os.path.lexists(p)]
            summary = None
            if present:
                try:
                    summary = self.index(
                        present, on_failure=on_failure, on_warning=on_warning, read_face_tags=read_face_tags
                    )
                except FaceDBError as exc:  # a file that went between the event and the read
                    if on_failure:
                        on_failure(present[0], str(exc))
            asked = roots if changed.rescan else changed.gone
            candidates = self.store.photos_under(asked) if asked else []
            gone, kept = [], 0
            for photo_id, path in candidates:
                if os.path.lexists(path):
                    continue
                unmounted = not any(os.path.isdir(r) for r in roots if path.startswith(os.path.join(r, "")))
                if unmounted or (changed.rescan and not os.path.isdir(os.path.dirname(path))):
                    kept += 1
                    continue
                gone.append((photo_id, path))
            self.store.forget_photos([photo_id for photo_id, _ in gone])
            if on_round:
                on_round(WatchRound(rescan=changed.rescan, index=summary, gone=[p for _, p in gone], kept=kept))

        if stop is not None:
            watch(roots, handle, settle=settle, rescan_every=rescan_every, batch=batch, stop=stop)
            return
        with StopOnSignal() as stopping:
            watch(roots, handle, settle=settle, rescan_every=rescan_every, batch=batch, stop=stopping.event)

    def faces_in(
        self, paths: Sequence[str | os.PathLike], keep_pixels: bool = False, *, model: str | None = None
    ) -> list[PhotoFaces]:
        """Detect, align and embed every face of each photo (with `model`; None: the one in
        use), without storing anything."""

        def files():
            for item in scan(paths):
                if item.error:
                    yield item.path, None, item.error
                    continue
                try:
                    yield item.path, read_file(Path(item.path))[0], None
                except ImageError as exc:
                    yield item.path, None, str(exc)

        return self._faces_of(files(), keep_pixels, self.named_model(model))

    def faces_in_uploads(
        self, uploads: list[tuple[str, bytes]], *, max_total_pixels: int | None = None, model: str | None = None
    ) -> list[PhotoFaces]:
        """Like faces_in, for images given as bytes (name, data): an upload that is not an image
        comes back with its error. `max_total_pixels` bounds the work of one request (each
        image is also bounded by FACEDB_MAX_PIXELS): read from the headers, before decoding."""
        if max_total_pixels is not None:
            total = sum(pixel_count(data) or 0 for _, data in uploads)
            if total > max_total_pixels:
                raise TooLarge(
                    f"these images hold {total:,} pixels together; one request may hold at most "
                    f"{max_total_pixels:,} (FACEDB_MAX_REQUEST_PIXELS)"
                )
        key = self.named_model(model)  # an unknown model is refused before any decoding
        sources = ((name, data, None if data else "empty file (0 bytes)") for name, data in uploads)
        return self._faces_of(sources, False, key)

    def _faces_of(self, sources, keep_pixels: bool, model: str) -> list[PhotoFaces]:
        """(name, bytes or None, error or None) -> faces, embedded together in batches."""
        extractor = self.extractor_of(model)
        results = []
        for name, data, error in sources:
            if error is None:
                try:
                    photo = decode(data, self.settings.max_pixels, self.settings.max_decoded_pixels)
                except ImageError as exc:
                    error = str(exc)
            if error is not None:
                results.append(PhotoFaces(name, [], error=error, model=model))
                continue
            results.append(
                PhotoFaces(
                    name,
                    extractor.faces_in(photo),
                    photo if keep_pixels else None,
                    content_hash=hashlib.sha256(data).hexdigest(),
                    model=model,
                )
            )
        extractor.embed([face for result in results for face in result.faces])
        return results

    def compare(self, paths: Sequence[str | os.PathLike]) -> CompareAnswer:
        """The FaceNet tutorial's compare: Euclidean distances between all faces of the photos."""
        return self.compare_faces(self.faces_in(paths))

    def compare_faces(self, results: list[PhotoFaces]) -> CompareAnswer:
        faces = [(r.path, i, f) for r in results for i, f in enumerate(r.faces)]
        vectors = np.stack([f.vector for _, _, f in faces]) if faces else np.zeros((0, 0), np.float32)
        distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1) if faces else np.zeros((0, 0))
        return CompareAnswer(
            faces=[ComparedFace(photo=p, face=i, box=f.box, score=f.detection.score) for p, i, f in faces],
            distances=distances.tolist(),
            errors=[PhotoError(photo=r.path, error=r.error) for r in results if r.error],
            photos_without_faces=[r.path for r in results if not r.error and not r.faces],
        )

    def index(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        retry_failed: bool = False,
        on_progress: ProgressCallback | None = None,
        on_failure: FailureCallback | None = None,
        on_warning: FailureCallback | None = None,
        within: Sequence[str | os.PathLike] | None = None,
        read_face_tags: bool | None = None,
        ray: str | None = None,
    ) -> IndexSummary:
        """Index files and folders. A path that does not exist is a mistake in the command, not a
        photo that failed: nothing is indexed and nothing recorded. With `within` (the service's
        roots), files and links that lead outside those folders are recorded as failed, unread.
        With `ray` (or FACEDB_RAY_ADDRESS: "local", "auto" or the head's host:port) the model
        work runs on a Ray cluster (facedb.ingest.distributed); the result is the same."""
        missing = [os.fspath(p) for p in paths if not os.path.lexists(p)]
        if missing:
            raise FaceDBError(
                f"{missing[0]}: no such file or folder"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        roots = None if within is None else [Path(os.path.realpath(root)) for root in within]
        started = time.monotonic()
        address = ray or self.settings.ray_address
        remote = None
        if address:
            from ..ingest.distributed import RayAnalysis, connect

            connect(address)  # before any work: a missing Ray or an unreachable cluster is one line
            remote = RayAnalysis(self.settings, self.model, address, self.settings.ray_actors)
        try:
            summary = self._indexer(read_face_tags, remote).run(
                paths,
                retry_failed=retry_failed,
                on_progress=on_progress,
                on_failure=on_failure,
                on_warning=on_warning,
                within=roots,
            )
        finally:
            if remote is not None:
                remote.close()
        if remote is not None:
            summary.ray_workers = sorted(remote.workers)
            summary.retried_chunks = remote.retried_chunks
        summary.wall_seconds = time.monotonic() - started
        return summary

    def enroll(
        self, name: str, paths: Sequence[str | os.PathLike], *, on_failure: FailureCallback | None = None
    ) -> EnrollResult:
        """Add the face of each photo to the identity `name` (created if new): its only face, or
        the one FaceNet's alignment takes (faces.main_face: the largest, near the middle)."""
        name = person_name(name)
        summary = self.index(paths, on_failure=on_failure)
        result = EnrollResult(name=name, failures=list(summary.failures))
        failed_now = {failure.path for failure in summary.failures}
        failed_before = self.store.failure_reasons(list(summary.photo_ids.values()))
        chosen = []
        for path, photo_id in sorted(summary.photo_ids.items()):
            if path in failed_now:
                continue  # reported once, with its reason
            if photo_id in failed_before:  # failed in an earlier run and unchanged since
                result.failures.append(FileFailure(path=path, reason=failed_before[photo_id]))
                if on_failure:
                    on_failure(path, failed_before[photo_id])
                continue
            faces = self.store.faces_of_photo(photo_id)
            if not faces:
                result.failures.append(FileFailure(path=path, reason="no face found"))
                continue
            main = main_face(faces, *self.store.photo_size(photo_id))
            assert main is not None
            if len(faces) > 1:
                result.warnings.append(
                    FileWarning(
                        path=path,
                        message=f"{len(faces)} faces in the photo; enrolled the largest near the middle, "
                        f"at {', '.join(str(round(v)) for v in main.box)}",
                    )
                )
            chosen.append(main.id)
            result.enrolled.append(path)
        if chosen:
            result.identity_id = self.store.assign(name, chosen, "enrolled")
        return result

    def enroll_from_folders(self, root: str | os.PathLike, **kwargs) -> list[EnrollResult]:
        """root/<person>/<photos>: the layout of LFW and most face datasets."""
        root = Path(root)
        if not root.is_dir():
            raise FaceDBError(f"{root}: not a folder")
        people = sorted(p for p in root.iterdir() if p.is_dir())
        return [self.enroll(person.name, [person], **kwargs) for person in people]

    def write_face_tags(self, paths: Sequence[str | os.PathLike] = (), *, embedded: bool = False) -> TagsWritten:
        """Write the names of the named faces of the photos under `paths` (all photos when
        none) as XMP face regions (MWG and Microsoft), into sidecars, or into the photos with
        `embedded` (their new bytes are recorded, so the next index takes them as unchanged).
        A photo that cannot be written is a failure of its own; the others go on."""
        from ..files.face_tags import FaceTagError, write_tags
        from ..files.images import exif_orientation

        prefixes = [os.path.abspath(os.fspath(p)) for p in paths]
        result = TagsWritten(photos=0, faces=0, written=[], unchanged=0)
        for photo_id, path, width, height, named in self.people_store.named_faces(prefixes):
            result.photos += 1
            photo = Path(path)
            try:
                orientation = exif_orientation(photo)
                target, changed = write_tags(photo, named, orientation, width, height, embedded=embedded)
            except (FaceTagError, ImageError) as exc:
                result.failures.append(FileFailure(path=path, reason=str(exc).removeprefix(f"{path}: ")))
                continue
            result.faces += len(named)
            if embedded and changed:
                data, digest = read_file(photo)
                info = photo.stat()
                self.store.file_changed_by_us(photo_id, len(data), info.st_mtime_ns, digest)
            if changed:
                result.written.append(str(target))
            else:
                result.unchanged += 1
        return result
