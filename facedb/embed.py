"""Face embeddings behind a small interface. FaceNet 20180408-102900 (512-d) from its frozen
graph, run on ONNX Runtime (the graph converted once, onnx_models.py) or on TensorFlow."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from .align import standardise
from .config import RUNTIMES, Settings
from .onnx_models import runtime_version
from .weights import embedder_weights, manifest


class Embedder(Protocol):
    name: str
    version: str
    sha256: str
    dimension: int
    runtime: str  # what runs the model, with its version: stored with each embedding

    def load(self) -> object:
        """Load the weights now (otherwise the first embed does)."""

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


def facenet_graph_def(cache_dir: Path):
    """The frozen FaceNet graph for any batch size: it was frozen at batch size 1, and two
    reshape constants pin that; set to -1 they make any batch give the batch-1 results (to
    ~1e-7), and the input takes any number of crops."""
    import tensorflow as tf

    spec = manifest()["embedder"]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(embedder_weights(cache_dir).read_bytes())
    batch_free = {name.split(":")[0]: value for name, value in spec["batch_one_constants"].items()}
    for node in graph_def.node:
        if node.name in batch_free:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(batch_free[node.name], np.int32)))
        elif node.name == "input":
            node.attr["shape"].shape.dim[0].size = -1
    return graph_def


class FacenetEmbedder:
    """Runs FaceNet in batches; outputs are unit length. Threads may share one instance."""

    def __init__(self, cache_dir: Path, batch_size: int = 16, runtime: str = "onnxruntime") -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        spec = manifest()["embedder"]
        self.name = spec["name"]
        self.version = spec["version"]
        self.sha256 = spec["sha256"]
        self.dimension = int(spec["dimension"])
        self.size = int(spec["input_size"])
        self.runtime = runtime_version(runtime)
        self._runtime = runtime
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self._run = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> FacenetEmbedder:
        return cls(settings.model_cache, settings.embed_batch_size, runtime=settings.runtime)

    def load(self):
        with self._lock:
            if self._run is None:
                self._run = self._onnxruntime() if self._runtime == "onnxruntime" else self._tensorflow()
        return self._run

    @property
    def loaded(self) -> bool:
        return self._run is not None

    def _onnxruntime(self):
        from . import onnx_models

        session = onnx_models.new_session(onnx_models.ensure(self.cache_dir).path("facenet"))
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]

    def _tensorflow(self):
        from . import tfruntime

        embedder_weights(self.cache_dir)  # fetched and checked before TensorFlow's seconds
        tfruntime.configure()
        import tensorflow as tf

        graph_def = facenet_graph_def(self.cache_dir)

        def run(images):
            (out,) = tf.compat.v1.import_graph_def(
                graph_def, input_map={"input:0": images}, return_elements=["embeddings:0"], name=""
            )
            return out

        function = tf.compat.v1.wrap_function(run, [tf.TensorSpec([None, self.size, self.size, 3], tf.float32)])
        function(tf.zeros([1, self.size, self.size, 3]))  # the first run optimises the graph (3 s, ~1 GB of scratch)
        tfruntime.release_freed_memory()
        lock = threading.Lock()  # requests served in threads share this model

        def embed(batch):
            with lock:
                return function(tf.constant(batch)).numpy()

        return embed

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: uint8 [N, 160, 160, 3] -> float32 [N, 512], unit length."""
        if len(crops) == 0:
            return np.zeros((0, self.dimension), np.float32)
        run = self.load()
        outputs = [
            run(standardise(crops[start : start + self.batch_size])) for start in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)
