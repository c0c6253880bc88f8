"""Work that outlasts a request's own thread: the bounded pool for model work (decode, detect,
embed) and indexing jobs in the background with their progress."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException

from ..api import FaceDB
from ..errors import NotFound
from ..results import (
    Job,
)
from .memory import give_back

T = TypeVar("T")


class ModelWork:
    """Decoding, detection and embedding for requests, in threads of their own, so that the
    event loop and the cheap endpoints never wait behind them. At most `workers` run and
    `waiting` more wait; a request beyond that is told to retry (503) before its uploads are
    read, so memory stays bounded too."""

    def __init__(self, workers: int, waiting: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facedb-model")
        self.capacity = workers + waiting
        self.slots = threading.BoundedSemaphore(self.capacity)
        self.running = 0
        self._running_lock = threading.Lock()

    def _job(self, function: Callable[[], T]) -> T:
        with self._running_lock:
            self.running += 1
        try:
            return function()
        finally:
            with self._running_lock:
                self.running -= 1
                idle = self.running == 0
            if idle:  # what the photos took goes back, not only to the next request
                give_back()

    @asynccontextmanager
    async def slot(self):
        """A place among the running and waiting requests, or 503; it yields `run(function)`.
        Work handed to `run` keeps the place until it is done, even if its client has gone
        meanwhile, so that clients that hang up cannot pile up work behind the limit."""
        if not self.slots.acquire(blocking=False):
            raise HTTPException(
                503,
                f"busy: {self.capacity} requests for the models are running or waiting; retry shortly",
                headers={"Retry-After": "1"},
            )
        handed_over = False

        def run(function: Callable[[], T]) -> asyncio.Future[T]:
            nonlocal handed_over
            future = self.pool.submit(self._job, function)
            handed_over = True
            future.add_done_callback(lambda _: self.slots.release())
            return asyncio.wrap_future(future)  # cancelled with its request: work not yet started never starts

        try:
            yield run
        finally:
            if not handed_over:
                self.slots.release()


class Jobs:
    """Indexing jobs, one at a time in a background thread, with their progress. A job is
    replaced whole at each step (never changed in place), so a reader always sees one step."""

    def __init__(self, facedb: FaceDB) -> None:
        self.facedb = facedb
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facedb-job")
        self.jobs: dict[int, Job] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def start(self, paths: list[str], retry_failed: bool, within: list[Path]) -> Job:
        with self.lock:
            job = Job(id=next(self.ids), paths=paths)
            self.jobs[job.id] = job
        self.pool.submit(self._run, job.id, retry_failed, within)
        return job

    def _update(self, job_id: int, **changes: Any) -> None:
        with self.lock:
            self.jobs[job_id] = self.jobs[job_id].model_copy(update=changes)

    def _run(self, job_id: int, retry_failed: bool, within: list[Path]) -> None:
        self._update(job_id, state="running")

        def progress(event) -> None:
            self._update(job_id, done=event.done, total=event.total, faces=event.faces, failed=event.failed)

        try:
            summary = self.facedb.index(
                self.jobs[job_id].paths, retry_failed=retry_failed, on_progress=progress, within=within
            )
            self._update(
                job_id,
                result=summary,
                state="done",
                total=summary.files,
                done=summary.files,
                faces=summary.faces,
                failed=summary.failed,
            )
        except Exception as exc:  # noqa: BLE001 - reported through the job, never lost
            self._update(job_id, state="failed", error=f"{type(exc).__name__}: {exc}"[:500])

    def get(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job
