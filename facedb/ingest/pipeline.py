"""The streaming ingest: scan -> read+hash -> decode -> detect -> align -> embed -> store.

Work goes in batches: each batch of photos is written in one transaction, so an interrupted
run loses at most the batch in flight and a re-run picks up where it stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..db.store import Claims, Store
from ..errors import ImageError
from ..faces import Face
from ..files.images import read_file
from ..files.scan import ScannedPath, scan
from ..records import INDEXED, CopyOf, Failed, FileStat, Indexed, Moved, Outcome, Touched
from ..results import FileFailure, FileWarning, IndexSummary
from .analysis import FaceExtractor, StageClock, analyse_photo

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ProgressEvent:
    done: int
    total: int
    faces: int
    failed: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


ProgressCallback = Callable[[ProgressEvent], None]
FailureCallback = Callable[[str, str], None]


def bounded_map(executor: Executor, function: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """executor.map that keeps at most `ahead` results in flight, so memory stays bounded."""
    pending: deque = deque()
    iterator = iter(items)
    for item in islice(iterator, ahead):
        pending.append(executor.submit(function, item))
    while pending:
        result = pending.popleft().result()
        for item in islice(iterator, 1):
            pending.append(executor.submit(function, item))
        yield result


class StopAfterBatch:
    """The first Ctrl-C (SIGINT) asks indexing to stop once the batch in hand is stored; a
    second one stops at once (the open transaction is rolled back, so nothing half-written
    stays). Only in the main thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None  # whatever SIGINT's handler was

    def __enter__(self) -> StopAfterBatch:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfacedb: stopping after the current batch (Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class RemoteAnalysis(Protocol):
    """The model stage run elsewhere (Ray's actors: ingest/distributed.py) instead of this
    process's threads: the same analysis of each photo, its outcomes, warnings and stage seconds."""

    def load(self) -> float: ...

    def check_readable(self, paths: list[str]) -> None: ...

    def analyse(
        self, files: list[FileStat], read_face_tags: bool, within: list[Path] | None
    ) -> tuple[list[Outcome], list[FileWarning], dict[str, float]]: ...

    def close(self) -> None: ...


class Indexer:
    """Streams photos through the stages in batches of `batch_photos`, each batch stored in one
    transaction. Inside a batch the stages overlap: `read_workers` threads read and hash files,
    `detect_workers` threads each decode, detect and crop one photo at a time, and one more
    thread embeds the faces found so far (in the embedder's batches) while detection goes on.
    TensorFlow and Pillow release the GIL while they compute."""

    def __init__(
        self,
        store: Store,
        extractor: FaceExtractor,
        embedding_model_id: int,
        model: str,
        *,
        max_pixels: int,
        max_decoded_pixels: int | None = None,
        batch_photos: int = 32,
        read_workers: int = 2,
        detect_workers: int = 1,
        read_face_tags: bool = True,
        remote: RemoteAnalysis | None = None,
    ) -> None:
        self.store = store
        self.remote = remote  # the model stage on Ray's actors instead of this process's threads
        self.extractor = extractor
        self.embedding_model_id = embedding_model_id
        self.model = model
        self.max_pixels = max_pixels
        self.max_decoded_pixels = max_decoded_pixels
        self.batch_photos = batch_photos
        self.read_workers = read_workers
        self.detect_workers = max(1, detect_workers)
        self.read_face_tags = read_face_tags
        self._warnings: list[FileWarning] = []  # of the batch being analysed, from any thread
        self._models_loaded = False

    def run(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        retry_failed: bool = False,
        on_progress: ProgressCallback | None = None,
        on_failure: FailureCallback | None = None,
        on_warning: FailureCallback | None = None,
        within: Sequence[Path] | None = None,
    ) -> IndexSummary:
        """`within`: real folders that every file read must really lie in (the REST service's roots).
        `on_warning(path, message)`: a photo indexed with something to say (its face tags)."""
        with StopAfterBatch() as stop, self.store.claims() as claims:
            return self._run(paths, retry_failed, on_progress, on_failure, on_warning, stop, within, claims)

    def _run(
        self,
        paths,
        retry_failed,
        on_progress,
        on_failure,
        on_warning,
        stop: StopAfterBatch,
        within: Sequence[Path] | None,
        claims: Claims,
    ) -> IndexSummary:
        started = time.monotonic()
        self._warnings = []
        # Two walks of the folders, so that memory does not grow with the archive: the first
        # only counts (for progress and ETA), the second feeds the batches.
        total = sum(1 for _ in scan(paths, within))
        summary = IndexSummary(files=0)
        clock = StageClock()
        done = 0
        candidates = scan(paths, within)
        # Photos another run (another process, the service's index jobs) has claimed: done
        # once this run has been through the rest, after waiting for that run's batch.
        deferred: list[ScannedPath] = []
        with (
            ThreadPoolExecutor(max_workers=max(1, self.read_workers), thread_name_prefix="facedb-read") as pool,
            ThreadPoolExecutor(max_workers=self.detect_workers, thread_name_prefix="facedb-detect") as detection,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="facedb-embed") as embedding,
        ):
            while True:
                batch = list(islice(candidates, self.batch_photos))
                if not batch:
                    if not deferred:
                        break
                    batch, deferred = deferred[: self.batch_photos], deferred[self.batch_photos :]
                    claims.wait([item.path for item in batch])
                else:
                    summary.files += len(batch)
                if stop.requested:
                    summary.interrupted = True
                    break
                taken = claims.take([item.path for item in batch])
                deferred += [item for item in batch if item.path not in taken]
                batch = [item for item in batch if item.path in taken]
                total = max(total, done + len(batch) + len(deferred))  # files added since the count
                outcomes = self._process(batch, pool, (detection, embedding), clock, retry_failed, summary, within)
                summary.photo_ids.update(
                    clock.timed("write", self.store.write, outcomes, self.embedding_model_id, self.model)
                )
                claims.give_up()
                warnings, self._warnings = self._warnings, []
                summary.warnings.extend(warnings)
                if on_warning:
                    for warning in warnings:
                        on_warning(warning.path, warning.message)
                for outcome in outcomes:
                    if isinstance(outcome, Failed):
                        summary.failed += 1
                        summary.failures.append(FileFailure(path=outcome.file.path, reason=outcome.reason))
                        if on_failure:
                            on_failure(outcome.file.path, outcome.reason)
                    elif isinstance(outcome, Indexed):
                        summary.faces += len(outcome.faces)
                        summary.tagged_faces += len(outcome.tagged)
                done += len(batch)
                if on_progress:
                    on_progress(
                        ProgressEvent(
                            done,
                            total,
                            summary.faces,
                            summary.failed,
                            time.monotonic() - started - summary.model_load_seconds,
                        )
                    )
        summary.seconds = time.monotonic() - started - summary.model_load_seconds
        summary.stage_seconds = {stage: round(seconds, 3) for stage, seconds in clock.seconds.items()}
        return summary

    def _process(
        self,
        batch: list[ScannedPath],
        pool: Executor,
        analysis: tuple[Executor, Executor],
        clock: StageClock,
        retry_failed: bool,
        summary: IndexSummary,
        within: Sequence[Path] | None,
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        stats: dict[str, FileStat] = {}
        for item in batch:
            if item.error:
                outcomes.append(Failed(FileStat(item.path), item.error))
                continue
            try:
                info = os.stat(item.path)
                stats[item.path] = FileStat(item.path, info.st_size, info.st_mtime_ns)
            except OSError:
                stats[item.path] = FileStat(item.path)  # broken link, vanished: read_file names the reason
        known = self.store.known_files(list(stats))
        to_read = []
        for path, stat in stats.items():
            record = known.get(path)
            unchanged = record is not None and record.size == stat.size and record.mtime_ns == stat.mtime_ns
            if record is not None and unchanged and (record.status == INDEXED or not retry_failed):
                summary.unchanged += 1
                summary.photo_ids[path] = record.id
            else:
                to_read.append(stat)

        def read(stat: FileStat) -> tuple[FileStat, bytes | None, str | None]:
            try:
                data, digest = clock.timed("read", lambda: read_file(Path(stat.path), within=within))
                return FileStat(stat.path, len(data), stat.mtime_ns, digest), data, None
            except ImageError as exc:
                return stat, None, str(exc)

        read_results = list(bounded_map(pool, read, to_read, ahead=self.read_workers * 2))
        by_hash = self.store.indexed_by_hash(s.content_hash for s, _, _ in read_results if s.content_hash)
        batch_paths = {s.path for s in to_read}
        to_decode: list[tuple[FileStat, bytes]] = []
        for stat, data, error in read_results:
            if data is None:
                outcomes.append(Failed(stat, error or "cannot read"))
                continue
            record = known.get(stat.path)
            if record and record.status == INDEXED and record.content_hash == stat.content_hash:
                outcomes.append(Touched(stat, record.id))
                summary.unchanged += 1
                continue
            twins = [(pid, p) for pid, p in by_hash.get(stat.content_hash or "", []) if p != stat.path]
            if twins and record is None:
                gone = [(pid, p) for pid, p in twins if not os.path.lexists(p) and p not in batch_paths]
                if gone:
                    outcomes.append(Moved(stat, gone[0][0]))
                    summary.moved += 1
                else:
                    outcomes.append(CopyOf(stat, twins[0][0]))
                    summary.copies += 1
                continue
            to_decode.append((stat, data))
        if to_decode and not self._models_loaded:
            if self.remote is not None:
                summary.model_load_seconds = self.remote.load()
                self.remote.check_readable([stat.path for stat, _ in to_decode])
            else:
                summary.model_load_seconds = self.extractor.load()
            self._models_loaded = True
        if self.remote is not None:
            analysed, warnings, seconds = self.remote.analyse(
                [stat for stat, _ in to_decode], self.read_face_tags, list(within) if within else None
            )
            self._warnings.extend(warnings)
            for stage, busy in seconds.items():
                clock.add(stage, busy)
        else:
            analysed = self._analyse(to_decode, *analysis, clock, within)
        for outcome in analysed:
            if isinstance(outcome, Indexed):
                if outcome.file.path in known:
                    summary.reindexed += 1
                else:
                    summary.new += 1
            outcomes.append(outcome)
        return outcomes

    def _analyse(
        self,
        files: list[tuple[FileStat, bytes]],
        detection: Executor,
        embedding: Executor,
        clock: StageClock,
        within: Sequence[Path] | None,
    ) -> list[Outcome]:
        photos: list[Indexed] = []
        outcomes: list[Outcome] = []
        embedded: list[Future] = []
        waiting: list[Face] = []
        chunk = getattr(self.extractor.embedder, "batch_size", 32)

        def analyse_one(item: tuple[FileStat, bytes]) -> Failed | Indexed:
            outcome, warnings = analyse_photo(
                self.extractor, *item, (self.max_pixels, self.max_decoded_pixels), self.read_face_tags, clock, within
            )
            self._warnings.extend(warnings)
            return outcome

        def embed(faces: list[Face]) -> None:
            clock.timed("embed", self.extractor.embed, faces)

        try:
            for result in bounded_map(detection, analyse_one, files, ahead=self.detect_workers * 2):
                if isinstance(result, Failed):
                    outcomes.append(result)
                    continue
                photos.append(result)
                waiting.extend(result.faces)
                if len(waiting) >= chunk:
                    embedded.append(embedding.submit(embed, waiting))
                    waiting = []
            if waiting:
                embedded.append(embedding.submit(embed, waiting))
        finally:
            for future in embedded:
                future.result()  # an embedding failure fails the batch: nothing of it is stored
        outcomes.extend(photos)
        return outcomes
