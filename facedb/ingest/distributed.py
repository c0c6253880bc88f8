"""Indexing on a Ray cluster (`facedb index --ray [ADDRESS]`).

The driver does everything a local run does but the model work: it walks the folders, skips
unchanged files without reading them, reads and hashes the others to recognise copies and
moves, and writes every batch to PostgreSQL in one transaction (pipeline.Indexer). What needs
the models (read, decode, detect, align, face tags, embed) runs in Ray actors that each load
the models once, reading the photos at the same paths: the files must be on a file system the
workers share. At most two chunks of photos are in flight per actor. A chunk lost with a dead
worker is sent again, and the worker replaced; results are written only by the driver, once,
so a retried chunk is never stored twice.

Ray is an optional extra: only this module imports it, and only when `--ray` is given.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import FaceDBError, ImageError, one_line
from ..files.images import MAX_FILE_BYTES, read_file
from ..records import Failed, FileStat, Indexed, Outcome
from ..results import FileWarning

INSTALL_HINT = "indexing on Ray needs Ray: pip install 'facedb[ray]'"
LOCAL = "local"  # FACEDB_RAY_ADDRESS / --ray with no address: start a Ray instance on this machine
CHUNK_PHOTOS = 4  # photos a task: small enough that a lost task costs little, large enough to batch the embedder
IN_FLIGHT_PER_ACTOR = 2  # one running, one waiting: the actor never idles between chunks
RESTART_SECONDS = 120  # a new actor loads the models (seconds) before it answers; longer: no CPU for it
ATTEMPTS = 4  # a chunk is given up (and the run stops, nothing of the batch stored) after this many lost workers


def _ray():
    try:
        import ray
    except ModuleNotFoundError:
        raise FaceDBError(INSTALL_HINT) from None
    return ray


def connect(address: str) -> None:
    """Join the cluster at `address` ("auto": the one this machine belongs to), or start one
    here (LOCAL)."""
    ray = _ray()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address not in (LOCAL, "auto"):
        _head_answers(address)
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FaceDBError(f"cannot join the Ray cluster at {address}: {one_line(exc)}") from None
    _cluster_messages_to_stderr(ray)


def _head_answers(address: str, seconds: float = 10.0) -> None:
    """Ray waits for an unreachable head for minutes, retrying: a refused or silent port is
    one line at once instead."""
    host, _, port = address.rpartition(":")
    if host.startswith("ray://"):
        host = host[len("ray://") :]
    if not host or not port.isdigit():
        raise FaceDBError(f"--ray {address}: give the Ray head as host:port, or auto, or no value to start Ray here")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise FaceDBError(f"cannot reach the Ray cluster's head at {address}: {exc.strerror or exc}") from None


def _cluster_messages_to_stderr(ray) -> None:
    """Ray prints the cluster's messages to the driver ("a worker died ...") on stdout, where
    `facedb index --json` writes its JSON: they go to stderr instead."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(module, "print_to_stdstream", None)
    if module is None or original is None or getattr(original, "facedb_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.facedb_stderr = True  # type: ignore[attr-defined]
    module.print_to_stdstream = to_stderr


class PhotoWorker:
    """A Ray actor: facedb's detector and embedder loaded once, photos read at their paths."""

    def __init__(self, settings: Settings, model: str) -> None:
        from ..vision.detect import MtcnnDetector
        from ..vision.embed import FacenetEmbedder
        from .analysis import FaceExtractor

        # one photo at a time per actor: the cluster's parallelism is its actors
        self.settings = settings
        self.extractor = FaceExtractor(
            MtcnnDetector.from_settings(settings, workers=1),
            FacenetEmbedder.from_settings(settings, model=model),
            settings.face_margin,
        )
        self.load_seconds = self.extractor.load()
        self.host = socket.gethostname()
        import ray

        # the node too: Ray nodes on one machine, or in containers on a host's network, share a host name
        self.worker = f"{self.host}:{os.getpid()} (node {ray.get_runtime_context().get_node_id()[:8]})"

    def pid(self) -> int:
        return os.getpid()

    def unreadable(self, paths: list[str]) -> list[str]:
        return [path for path in paths if not os.access(path, os.R_OK)]

    def analyse(self, files: list[FileStat], read_face_tags: bool, within: list[Path] | None) -> ChunkResult:
        from .analysis import StageClock, analyse_photo

        clock = StageClock()
        result = ChunkResult(worker=self.worker)
        for stat in files:
            try:
                data, digest = clock.timed("worker read", read_file, Path(stat.path), MAX_FILE_BYTES, within)
            except ImageError as exc:
                result.outcomes.append(Failed(stat, f"{exc} (read on the Ray worker {self.host})"))
                continue
            if stat.content_hash and digest != stat.content_hash:
                result.outcomes.append(Failed(stat, "the file changed while it was being indexed: index it again"))
                continue
            outcome, warnings = analyse_photo(
                self.extractor,
                stat,
                data,
                (self.settings.max_pixels, self.settings.max_decoded_pixels),
                read_face_tags,
                clock,
                within,
            )
            result.outcomes.append(outcome)
            result.warnings.extend(warnings)
        faces = [face for outcome in result.outcomes if isinstance(outcome, Indexed) for face in outcome.faces]
        clock.timed("embed", self.extractor.embed, faces)
        for face in faces:
            face.crop = np.zeros((0, 0, 3), np.uint8)  # the driver stores the thumbnail and the vector only
        result.stage_seconds = clock.seconds
        return result


@dataclass
class ChunkResult:
    worker: str
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[FileWarning] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


class RayAnalysis:
    """The model stage of pipeline.Indexer on Ray actors."""

    def __init__(self, settings: Settings, model: str, address: str, actors: int | None = None) -> None:
        if actors is not None and actors < 1:
            raise FaceDBError(f"FACEDB_RAY_ACTORS must be at least 1, not {actors}")
        # the workers never open the database: its URL (and password) stays with the driver
        self.settings = replace(settings, ray_address=None, database_url=None)
        self.model = model
        self.address = address
        self.wanted_actors = actors
        self._actor_class: Any = None
        self._actors: list[Any] = []
        self.retried_chunks = 0
        self.workers: set[str] = set()

    def load(self) -> float:
        """Start the actors and wait until each has loaded the models; returns the seconds."""
        started = time.monotonic()
        ray = _ray()
        if not self._actors:
            self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(PhotoWorker)
            free = int(ray.available_resources().get("CPU", 0))  # CPUs other jobs hold are not ours
            answers = {
                actor.pid.remote(): actor
                for actor in (self._new_actor() for _ in range(self.wanted_actors or max(1, free)))
            }
            ready, _ = ray.wait(list(answers), num_returns=len(answers), timeout=RESTART_SECONDS)
            why = f"none started within {RESTART_SECONDS} s ({free} CPUs of the cluster were free; each needs one)"
            for answer, actor in answers.items():
                try:
                    if answer in ready:
                        ray.get(answer)
                        self._actors.append(actor)
                        continue
                except ray.exceptions.RayError as exc:
                    why = f"they could not start: {one_line(exc, 200)}"
                ray.kill(actor)  # no CPU came free for it, or it could not load the models
            if not self._actors:
                raise FaceDBError(f"no Ray worker to index with: {why}")
        return time.monotonic() - started

    def _new_actor(self):
        return self._actor_class.remote(self.settings, self.model)

    def _replace(self, dead: Any) -> None:
        """A lost actor gives way to a new one (Ray does not restart ours: a retry is the
        driver's, so that it knows which chunk to send again). A new one that cannot start,
        say because its node is gone and no CPU is free, is left out; without any actor the
        run stops."""
        ray = _ray()
        if dead not in self._actors:
            return  # replaced already, when its other chunk came back lost
        self._actors.remove(dead)
        ray.kill(dead)
        fresh = self._new_actor()
        try:
            ray.get(fresh.pid.remote(), timeout=RESTART_SECONDS)
            self._actors.append(fresh)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            ray.kill(fresh)
        if not self._actors:
            raise FaceDBError(
                "every Ray worker was lost and none could be started again; nothing of this batch was stored"
            )

    def check_readable(self, paths: list[str]) -> None:
        """Every actor must read the files at the paths the driver sees (a shared file system)."""
        if not paths:
            return
        ray = _ray()
        sample = paths[:20]
        try:
            answers = ray.get([actor.unreadable.remote(sample) for actor in self._actors], timeout=RESTART_SECONDS)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as exc:
            raise FaceDBError(
                f"the Ray workers did not answer whether they can read the photos: {one_line(exc)}"
            ) from None
        for missing in answers:
            if missing:
                raise FaceDBError(
                    f"{missing[0]}: not readable by the Ray workers at that path; indexing on Ray needs the "
                    "photos on a file system every worker mounts at the same path"
                )

    def analyse(
        self, files: list[FileStat], read_face_tags: bool, within: list[Path] | None
    ) -> tuple[list[Outcome], list[FileWarning], dict[str, float]]:
        """Outcomes in the order of `files`, the warnings, and the workers' busy seconds per stage.
        A chunk lost with its worker goes again; lost twice, its photos go again one by one, and
        a photo whose worker dies ATTEMPTS times (one that crashes the decoder, say) is a failure
        of that photo, not of the run."""
        ray = _ray()
        lost = (
            ray.exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.ObjectLostError,
            getattr(ray.exceptions, "NodeDiedError", ray.exceptions.RayActorError),
        )
        waiting: deque[tuple[list[FileStat], int]] = deque(
            (files[i : i + CHUNK_PHOTOS], 0) for i in range(0, len(files), CHUNK_PHOTOS)
        )  # (photos, times lost so far)
        running: dict[Any, tuple[list[FileStat], int, Any]] = {}  # task -> (photos, times lost, actor)
        done: list[ChunkResult] = []
        failed: list[Outcome] = []
        while waiting or running:
            load = {id(actor): 0 for actor in self._actors}
            for *_, actor in running.values():
                if id(actor) in load:
                    load[id(actor)] += 1
            while waiting and min(load.values()) < IN_FLIGHT_PER_ACTOR:
                actor = min(self._actors, key=lambda a: load[id(a)])  # the least busy
                chunk, times = waiting.popleft()
                running[actor.analyse.remote(chunk, read_face_tags, within)] = (chunk, times, actor)
                load[id(actor)] += 1
            (ready,), _ = ray.wait(list(running), num_returns=1)
            chunk, times, actor = running.pop(ready)
            try:
                done.append(ray.get(ready))
            except lost as exc:
                self.retried_chunks += 1
                self._replace(actor)
                times += 1
                if len(chunk) > 1 and times >= 2:
                    waiting.extendleft(([stat], times) for stat in reversed(chunk))
                elif times >= ATTEMPTS:
                    reason = f"its Ray worker died {times} times while analysing it ({one_line(exc, 120)})"
                    failed.extend(Failed(stat, reason) for stat in chunk)
                else:
                    waiting.appendleft((chunk, times))
            except ray.exceptions.RayTaskError as exc:
                raise FaceDBError(f"a Ray worker failed on {chunk[0].path}: {one_line(exc.cause)}") from None
            except ray.exceptions.RayError as exc:  # out of memory or disk, a worker that cannot start, ...
                raise FaceDBError(
                    f"Ray failed on {chunk[0].path}: {one_line(exc)}; nothing of this batch was stored"
                ) from None
        by_path: dict[str, Outcome] = {outcome.file.path: outcome for outcome in failed}
        warnings: list[FileWarning] = []
        seconds: dict[str, float] = {}
        for result in done:
            by_path.update((outcome.file.path, outcome) for outcome in result.outcomes)
            warnings.extend(result.warnings)
            self.workers.add(result.worker)
            for stage, value in result.stage_seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + value
        return [by_path[stat.path] for stat in files], warnings, seconds

    def close(self) -> None:
        ray = _ray()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
