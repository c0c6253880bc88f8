"""TensorFlow is imported here only, once, when a model is first needed (it takes seconds)."""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_configured = False


def verbose() -> bool:
    """`facedb --verbose` (or FACEDB_VERBOSE=1): show TensorFlow's own start-up and log lines."""
    return os.environ.get("FACEDB_VERBOSE", "").lower() in ("1", "true", "yes")


def configure() -> None:
    global _configured
    with _lock:
        if _configured:
            return
        if not verbose():
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _native_stderr_held_back(unless=verbose()):
            import tensorflow as tf

        if not verbose():
            tf.get_logger().setLevel("ERROR")
        _configured = True


@contextmanager
def _native_stderr_held_back(unless: bool) -> Iterator[None]:
    """TensorFlow's C++ libraries print start-up lines ("All log messages before
    absl::InitializeLog()...", "oneDNN custom operations are on...") straight to file
    descriptor 2 while they load, whatever TF_CPP_MIN_LOG_LEVEL says. Everything written to
    file descriptor 2 meanwhile is held back, then shown without TensorFlow's lines (other
    threads' progress and failure lines are kept); all of it if the import fails."""
    if unless:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved, held, keep=lambda line: True)
            raise
        else:
            _restore(saved, held, keep=lambda line: not _NATIVE_LOG_LINE.match(line))


# absl's format (severity and date, time, thread, file:line]) and its first-message notice
_NATIVE_LOG_LINE = re.compile(r"[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::")


def _restore(saved: int, held, keep) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    held.seek(0)
    text = held.read().decode("utf-8", "replace")
    shown = "".join(line for line in text.splitlines(keepends=True) if keep(line))
    if shown:
        sys.stderr.write(shown)
        sys.stderr.flush()


def release_freed_memory() -> None:
    """Hand freed heap back to the system. TensorFlow's one-off optimisation of the FaceNet
    graph on its first run frees about 650 MB that glibc would otherwise keep in the
    process's RSS for good (measured: 1.9 GB -> 1.3 GB after the first embedding)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc (e.g. musl): nothing to trim
