"""The models on ONNX Runtime: its sessions, and the cache of converted models (one folder per
pinned weights, converter and way of converting, by their sha256).

A process that only answers (who, index, serve) never imports TensorFlow: starting it takes
about a second instead of ten, and a third of the memory. A cache without the models has them
converted in a child process (onnx_conversion.py: it needs TensorFlow and tf2onnx, 17 s
and under 2 GB once), under a lock so that two processes starting together convert once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import WeightsUnavailable, one_line
from .weights import FROZEN_GRAPH_MODEL, embedder_spec, manifest

OPSET = 17
FORMAT = 2  # bump when the way the graphs are made changes, so old caches are not used (2: tf2onnx's optimizers off)
NETWORKS = ("facenet", "pnet", "rnet", "onet")


@cache
def runtime_version(runtime: str) -> str:
    """The runtime as stored with each embedding, e.g. "onnxruntime 1.32.0"."""
    package = {"onnxruntime": "onnxruntime", "tensorflow": "tensorflow-cpu"}[runtime]
    try:
        return f"{runtime} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return runtime


@cache
def cache_folder(cache_dir: Path) -> Path:
    """One folder per (pinned weights, converter, facedb's way of converting)."""
    spec = manifest()
    sources = json.dumps(
        [
            embedder_spec(FROZEN_GRAPH_MODEL)["sha256"],
            spec["detector"]["files"],
            OPSET,
            FORMAT,
            package_version("tf2onnx"),
        ],
        sort_keys=True,
    )
    return cache_dir / "onnx" / hashlib.sha256(sources.encode()).hexdigest()[:16]


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


@dataclass(frozen=True)
class OnnxModels:
    folder: Path
    checked: dict  # what the conversion measured against TensorFlow

    def path(self, network: str) -> Path:
        return self.folder / f"{network}.onnx"


_in_process = threading.Lock()


def ensure(cache_dir: Path, say=None) -> OnnxModels:
    """The converted models, converting them first if this cache has none."""
    folder = cache_folder(cache_dir)

    def fetch_weights() -> None:
        # the pinned weights first, here: a missing or wrong file is the usual one-line error
        from .weights import embedder_weights, verify_detector_weights

        embedder_weights(cache_dir, FROZEN_GRAPH_MODEL)
        verify_detector_weights()

    found = _convert_once(
        folder,
        lambda: _complete(folder),
        fetch_weights,
        [str(cache_dir)],
        "the models",
        "them",
        "about a minute, ",
        say or _say,
    )
    assert found is not None
    return found


def embedder_path(cache_dir: Path, model: str) -> Path:
    """The ONNX file of an embedding model, converting it first if this cache has none."""
    if model == FROZEN_GRAPH_MODEL:
        return ensure(cache_dir).path("facenet")
    folder = embedder_folder(cache_dir, model)
    path = folder / "facenet.onnx"

    def converted() -> Path | None:
        return path if path.is_file() and (folder / "checked.json").is_file() else None

    def fetch_weights() -> None:
        from .weights import embedder_weights

        embedder_weights(cache_dir, model)

    found = _convert_once(folder, converted, fetch_weights, [str(cache_dir), model], f"model {model}", "it", "", _say)
    assert found is not None
    return found


def _convert_once(folder: Path, done, fetch_weights, arguments: list[str], what: str, it: str, how_long: str, say):
    """Convert in a child process (`python -m facedb.vision.onnx_conversion ARGUMENTS`) unless `done()`
    finds it converted, under a lock so that two processes starting together convert once."""
    found = done()
    if found is not None:
        return found
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _in_process, open(folder.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting: wait for it
        found = done()
        if found is not None:
            return found
        fetch_weights()
        say(f"facedb: converting {what} for ONNX Runtime (once per machine; {how_long}TensorFlow is needed for it)")
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "facedb.vision.onnx_conversion", *arguments],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
        )
        found = done()
        if run.returncode != 0 or found is None:
            lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {run.returncode}"
            raise WeightsUnavailable(
                f"converting {what} for ONNX Runtime failed: {one_line(reason)}"
                f" (FACEDB_RUNTIME=tensorflow runs {it} on TensorFlow instead)"
            )
        say(f"facedb: {what} converted in {time.monotonic() - started:.0f} s")
        return found


def embedder_folder(cache_dir: Path, model: str) -> Path:
    sources = json.dumps([embedder_spec(model)["sha256"], OPSET, FORMAT, package_version("tf2onnx")], sort_keys=True)
    return cache_dir / "onnx" / f"{model}-{hashlib.sha256(sources.encode()).hexdigest()[:16]}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _complete(folder: Path) -> OnnxModels | None:
    try:
        checked = json.loads((folder / "checked.json").read_text())
    except (OSError, ValueError):
        return None
    if not all((folder / f"{n}.onnx").is_file() for n in NETWORKS):
        return None
    return OnnxModels(folder, checked)


def arena_shrinkage():
    """Run options that give the session's memory arena back to the system after the call."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def new_session(model: Path | bytes, threads: int = 0):
    """An ONNX Runtime session on the CPU; threads 0: one per core (the default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    # Idle pool threads spin by default, waiting for the next call: CPU that requests and photos
    # running beside this one then lack (measured with the load benchmark, docs/service.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
