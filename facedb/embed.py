"""Face embeddings behind a small interface. FaceNet 20180408-102900 (512-d) from its frozen graph."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from .align import standardise
from .weights import embedder_weights, manifest


class Embedder(Protocol):
    name: str
    version: str
    sha256: str
    dimension: int

    def load(self) -> object:
        """Load the weights now (otherwise the first embed does)."""

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


class FacenetEmbedder:
    """Runs the frozen FaceNet graph in TensorFlow, in batches; outputs are unit length."""

    def __init__(self, cache_dir: Path, batch_size: int = 16) -> None:
        spec = manifest()["embedder"]
        self.name = spec["name"]
        self.version = spec["version"]
        self.sha256 = spec["sha256"]
        self.dimension = int(spec["dimension"])
        self._spec = spec
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self._function = None
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()  # requests served in threads share this model

    def load(self):
        with self._lock:
            if self._function is None:
                self._function = self._build()
        return self._function

    @property
    def loaded(self) -> bool:
        return self._function is not None

    def _build(self):
        from . import tfruntime

        path = embedder_weights(self.cache_dir)
        tfruntime.configure()
        import tensorflow as tf

        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(path.read_bytes())
        # The published graph was frozen at batch size 1; two reshape constants pin it.
        # Mapping them to -1 makes any batch size give the batch-1 results (to ~1e-7).
        batch_free = self._spec["batch_one_constants"]

        def run(images):
            mapping = {"input:0": images}
            mapping.update({name: tf.constant(value, dtype=tf.int32) for name, value in batch_free.items()})
            (out,) = tf.compat.v1.import_graph_def(
                graph_def, input_map=mapping, return_elements=["embeddings:0"], name=""
            )
            return out

        size = int(self._spec["input_size"])
        function = tf.compat.v1.wrap_function(run, [tf.TensorSpec([None, size, size, 3], tf.float32)])
        function(tf.zeros([1, size, size, 3]))  # the first run optimises the graph (3 s, ~1 GB of scratch)
        tfruntime.release_freed_memory()
        return function

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: uint8 [N, 160, 160, 3] -> float32 [N, 512], unit length."""
        if len(crops) == 0:
            return np.zeros((0, self.dimension), np.float32)
        function = self.load()
        import tensorflow as tf

        outputs = []
        for start in range(0, len(crops), self.batch_size):
            batch = standardise(crops[start : start + self.batch_size])
            with self._run_lock:
                outputs.append(function(tf.constant(batch)).numpy())
        return np.concatenate(outputs).astype(np.float32)
