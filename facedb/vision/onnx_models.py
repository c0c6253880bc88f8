"""The models as ONNX graphs, for ONNX Runtime: converted once from the pinned TensorFlow
models, checked against TensorFlow, cached by the sources' sha256.

A process that only answers (who, index, serve) then never imports TensorFlow: starting it
takes about a second instead of ten, and a third of the memory. The conversion itself runs in
a child process (it needs TensorFlow and tf2onnx, a minute and 2 GB once), under a lock so
that two processes starting together convert once. FaceNet is converted from its frozen
graph with the batch-1 constants freed (as embed.py does), MTCNN's networks from the graphs
facedb runs on TensorFlow: its own P-Net (pnet.py, the pooled first layer) and mtcnn's
R-Net and O-Net. Each converted network must give TensorFlow's outputs on fixed inputs
within `TOLERANCE`, or nothing is cached and the conversion fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import WeightsUnavailable, one_line
from .weights import FROZEN_GRAPH_MODEL, embedder_spec, manifest

OPSET = 17
TOLERANCE = 1e-5  # largest |difference| from TensorFlow's outputs on the fixed inputs
FORMAT = 1  # bump when the way the graphs are made changes, so old caches are not used
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
        [embedder_spec(FROZEN_GRAPH_MODEL)["sha256"], spec["detector"]["files"], OPSET, FORMAT, _version("tf2onnx")],
        sort_keys=True,
    )
    return cache_dir / "onnx" / hashlib.sha256(sources.encode()).hexdigest()[:16]


def _version(package: str) -> str:
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
    folder = _embedder_folder(cache_dir, model)
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
    """Convert in a child process (`python -m facedb.vision.onnx_models ARGUMENTS`) unless `done()`
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
            [sys.executable, "-m", "facedb.vision.onnx_models", *arguments],
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


def _embedder_folder(cache_dir: Path, model: str) -> Path:
    sources = json.dumps([embedder_spec(model)["sha256"], OPSET, FORMAT, _version("tf2onnx")], sort_keys=True)
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


# ---- the conversion (in a child process: python -m facedb.vision.onnx_models CACHE_DIR) ---------------
def convert(cache_dir: Path) -> Path:
    from . import tfruntime

    tfruntime.configure()
    import tensorflow as tf
    import tf2onnx

    from .detect import MtcnnDetector
    from .embed import facenet_graph_def

    folder = cache_folder(cache_dir)
    rng = np.random.default_rng(20180408)
    models: dict[str, bytes] = {}
    checked: dict[str, dict] = {}

    def convert_one(name: str, function, signature, inputs: list[np.ndarray]) -> None:
        graph = tf.function(function, input_signature=signature)
        proto, _ = tf2onnx.convert.from_function(graph, input_signature=signature, opset=OPSET)
        expected = [[np.asarray(t) for t in _as_list(graph(tf.constant(x)))] for x in inputs]
        got = [_run_onnx(proto.SerializeToString(), x) for x in inputs]
        difference = max(float(np.max(np.abs(e - g))) for es, gs in zip(expected, got) for e, g in zip(es, gs))
        if not difference <= TOLERANCE:
            raise SystemExit(f"{name}: ONNX Runtime differs from TensorFlow by {difference:.2e} (> {TOLERANCE:g})")
        models[name] = proto.SerializeToString()
        checked[name] = {"max_abs_difference": difference, "inputs": [list(x.shape) for x in inputs]}

    # FaceNet, from its frozen graph at any batch size
    graph_def = facenet_graph_def(cache_dir)
    size = int(embedder_spec(FROZEN_GRAPH_MODEL)["input_size"])

    def facenet(images):
        (out,) = tf.compat.v1.import_graph_def(
            graph_def, input_map={"input:0": images}, return_elements=["embeddings:0"], name=""
        )
        return out

    crops = [rng.standard_normal((n, size, size, 3)).astype(np.float32) for n in (1, 5)]
    convert_one("facenet", facenet, [tf.TensorSpec([None, size, size, 3], tf.float32)], crops)

    # MTCNN: facedb's P-Net on a level of any size, mtcnn's R-Net and O-Net on patches
    pnet, rnet, onet = MtcnnDetector.tensorflow_stages()
    levels = [rng.uniform(-1, 1, (1, h, w, 3)).astype(np.float32) for h, w in ((12, 12), (97, 131), (240, 180))]
    convert_one("pnet", pnet.network, [tf.TensorSpec([1, None, None, 3], tf.float32)], levels)
    for name, stage, patch in (("rnet", rnet, 24), ("onet", onet, 48)):
        patches = [rng.uniform(-1, 1, (n, patch, patch, 3)).astype(np.float32) for n in (1, 37)]
        convert_one(name, stage.network, [tf.TensorSpec([None, patch, patch, 3], tf.float32)], patches)

    _store(folder, models, checked)
    return folder


def _store(folder: Path, models: dict[str, bytes], checked: dict[str, dict]) -> None:
    """The converted networks and what they were checked against, in place all at once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        staged = Path(scratch) / folder.name
        staged.mkdir()
        for name, data in models.items():
            (staged / f"{name}.onnx").write_bytes(data)
        record = {
            "converter": f"tf2onnx {_version('tf2onnx')}",
            "tensorflow": _version("tensorflow-cpu"),
            "opset": OPSET,
            "tolerance": TOLERANCE,
            "networks": checked,
        }
        (staged / "checked.json").write_text(json.dumps(record, indent=2))
        if folder.exists():  # an incomplete earlier attempt
            os.rename(folder, Path(scratch) / "old")
        os.rename(staged, folder)


def convert_keras_embedder(cache_dir: Path, model: str) -> Path:
    """An embedding model published as a Keras file: built by inception_resnet_v1.py, converted,
    checked against Keras on fixed crops."""
    from . import tfruntime

    tfruntime.configure()
    import tensorflow as tf
    import tf2onnx

    from .inception_resnet_v1 import build
    from .weights import embedder_weights

    network = build(embedder_weights(cache_dir, model))
    size = int(embedder_spec(model)["input_size"])
    signature = [tf.TensorSpec([None, size, size, 3], tf.float32)]
    graph = tf.function(lambda x: network(x, training=False), input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(graph, input_signature=signature, opset=OPSET)
    rng = np.random.default_rng(20170512)
    inputs = [rng.standard_normal((n, size, size, 3)).astype(np.float32) for n in (1, 5)]
    data = proto.SerializeToString()
    difference = max(float(np.max(np.abs(np.asarray(graph(tf.constant(x))) - _run_onnx(data, x)[0]))) for x in inputs)
    if not difference <= TOLERANCE:
        raise SystemExit(f"{model}: ONNX Runtime differs from Keras by {difference:.2e} (> {TOLERANCE:g})")
    folder = _embedder_folder(cache_dir, model)
    _store(
        folder,
        {"facenet": data},
        {"facenet": {"max_abs_difference": difference, "inputs": [list(x.shape) for x in inputs]}},
    )
    return folder


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _run_onnx(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    session = new_session(model, threads=0)
    return session.run(None, {session.get_inputs()[0].name: x})


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


if __name__ == "__main__":
    from ..errors import FaceDBError

    try:
        if len(sys.argv) > 2:
            convert_keras_embedder(Path(sys.argv[1]), sys.argv[2])
        else:
            convert(Path(sys.argv[1]))
    except FaceDBError as exc:
        sys.exit(str(exc))
