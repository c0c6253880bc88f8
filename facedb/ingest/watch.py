"""Keeping an archive indexed while it changes: file system events (watchdog: inotify on
Linux) for photos that arrive, change, move or go, a periodic rescan as a safety net for
events that were missed (a network share, an overflowing event queue, a change while nothing
watched), and bounded batches handed to the indexer. A file is handed over once it has been
quiet for `settle` seconds, so a photo still being copied is not read half-written.

The work itself is the caller's (`FaceDB.watch`): `index(paths)` for files that are there,
`gone(paths)` for files that are not; this module only decides when and which."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


@dataclass
class Changed:
    """What one round hands over: paths there now (to index) and paths gone."""

    present: list[str]
    gone: list[str]
    rescan: bool = False


class _Changes(FileSystemEventHandler):
    """Paths touched by events, with when they were last touched."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.touched: dict[str, float] = {}

    def _touch(self, *paths: str | bytes) -> None:
        now = time.monotonic()
        with self.lock:
            for path in paths:
                self.touched[os.fsdecode(path)] = now

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type not in ("moved", "deleted"):
            return  # a folder made or changed: its files come as events of their own
        if event.event_type in ("opened", "closed_no_write"):
            return
        self._touch(event.src_path, *([event.dest_path] if getattr(event, "dest_path", "") else []))

    def settled(self, quiet: float, most: int) -> list[str]:
        """About `most` paths untouched for `quiet` seconds, oldest first, taken out of the
        queue; paths touched at one instant (a move's old and new path) go in one round."""
        limit = time.monotonic() - quiet
        with self.lock:
            ready = sorted((at, path) for path, at in self.touched.items() if at <= limit)
            if len(ready) > most:
                last = ready[most - 1][0]
                ready = [(at, path) for at, path in ready if at <= last]
            for _, path in ready:
                del self.touched[path]
        return [path for _, path in ready]

    def waiting(self) -> int:
        with self.lock:
            return len(self.touched)


class StopOnSignal:
    """SIGINT or SIGTERM asks the watch to stop once the round in hand is stored."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def watch(
    roots: Sequence[str | os.PathLike],
    handle: Callable[[Changed], None],
    *,
    settle: float = 2.0,
    batch: int = 256,
    rescan_every: float = 600.0,
    stop: threading.Event | None = None,
    tick: float = 0.25,
) -> None:
    """Watch the folders `roots` until `stop` is set, handing each round of settled changes to
    `handle`: about `batch` files a round; first, and then every `rescan_every` seconds (0:
    only first), a rescan round whose `present` are the roots themselves. Folders moved or deleted hand over their
    old path: `handle` decides what under it is gone."""
    stop = stop or threading.Event()
    changes = _Changes()
    observer = Observer()
    folders = [os.path.abspath(os.fspath(root)) for root in roots]
    for folder in folders:
        observer.schedule(changes, folder, recursive=True)
    observer.start()  # before the first rescan: nothing that changes during it is missed
    try:
        next_rescan = time.monotonic()  # the first round is a rescan
        while not stop.is_set():
            if time.monotonic() >= next_rescan:
                handle(Changed(present=list(folders), gone=[], rescan=True))
                next_rescan = time.monotonic() + rescan_every if rescan_every > 0 else float("inf")
            ready = changes.settled(settle, batch)
            if ready:
                present = [p for p in ready if Path(p).is_file() or Path(p).is_dir()]
                handle(Changed(present=present, gone=[p for p in ready if not os.path.lexists(p)]))
                continue
            stop.wait(tick)
    finally:
        observer.stop()
        observer.join(timeout=10)
