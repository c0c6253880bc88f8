"""Face embeddings behind a small interface: the FaceNet models of models/manifest.json.
20180408-102900 (512-d, the default) from its frozen graph; 20170512-110547 (128-d, the
tutorial's) from its Keras file (inception_resnet_v1.py). Each runs on ONNX Runtime (converted
once, onnx_runtime.py) or on TensorFlow, and gets its crops standardised as it was trained."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from ..config import RUNTIMES, Settings
from .align import preprocessing_name, standardise
from .onnx_runtime import runtime_version
from .weights import FROZEN_GRAPH_MODEL, embedder_spec, embedder_weights


class Embedder(Protocol):
    model: str  # the manifest's key, which users name (--model)
    name: str
    version: str
    sha256: str
    dimension: int
    runtime: str  # what runs the model, with its version: stored with each embedding

    def preprocessing(self, margin: float) -> str:
        """How crops are made and standardised: stored with each embedding."""

    def load(self) -> object:
        """Load the weights now (otherwise the first embed does)."""

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


def facenet_graph_def(cache_dir: Path):
    """The frozen FaceNet graph for any batch size: it was frozen at batch size 1, and two
    reshape constants pin that; set to -1 they make any batch give the batch-1 results (to
    ~1e-7), and the input takes any number of crops."""
    import tensorflow as tf

    spec = embedder_spec(FROZEN_GRAPH_MODEL)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(embedder_weights(cache_dir, FROZEN_GRAPH_MODEL).read_bytes())
    batch_free = {name.split(":")[0]: value for name, value in spec["batch_one_constants"].items()}
    for node in graph_def.node:
        if node.name in batch_free:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(batch_free[node.name], np.int32)))
        elif node.name == "input":
            node.attr["shape"].shape.dim[0].size = -1
    return graph_def


class FacenetEmbedder:
    """Runs a FaceNet model in batches; outputs are unit length. Threads may share one instance."""

    def __init__(
        self, cache_dir: Path, batch_size: int = 16, runtime: str = "onnxruntime", model: str | None = None
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        spec = embedder_spec(model)
        self.model = spec["key"]
        self.format = spec["format"]
        self.standardisation = spec["standardisation"]
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
    def from_settings(cls, settings: Settings, model: str | None = None) -> FacenetEmbedder:
        return cls(settings.model_cache, settings.embed_batch_size, runtime=settings.runtime, model=model)

    def preprocessing(self, margin: float) -> str:
        return preprocessing_name(margin, self.standardisation)

    def standardise(self, crops: np.ndarray) -> np.ndarray:
        if self.standardisation == "prewhiten":
            from .inception_resnet_v1 import prewhiten

            return prewhiten(crops)
        return standardise(crops)

    def load(self):
        with self._lock:
            if self._run is None:
                self._run = self._onnxruntime() if self._runtime == "onnxruntime" else self._tensorflow()
        return self._run

    @property
    def loaded(self) -> bool:
        return self._run is not None

    def _onnxruntime(self):
        from . import onnx_runtime

        session = onnx_runtime.new_session(onnx_runtime.embedder_path(self.cache_dir, self.model))
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]

    def _tensorflow(self):
        from . import tfruntime

        weights = embedder_weights(self.cache_dir, self.model)  # fetched and checked before TensorFlow's seconds
        tfruntime.configure()
        import tensorflow as tf

        if self.format == "keras-h5":
            from .inception_resnet_v1 import build

            network = build(weights)
            # a graph, not eager calls: 26 ms a face at batch 1 against 408
            traced = tf.function(
                lambda x: network(x, training=False),
                input_signature=[tf.TensorSpec([None, self.size, self.size, 3], tf.float32)],
            )
            keras_lock = threading.Lock()

            def embed_keras(batch):
                with keras_lock:
                    return traced(tf.constant(batch)).numpy()

            return embed_keras

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
        """crops: uint8 [N, 160, 160, 3] -> float32 [N, dimension], unit length."""
        if len(crops) == 0:
            return np.zeros((0, self.dimension), np.float32)
        run = self.load()
        outputs = np.concatenate(
            [
                run(self.standardise(crops[start : start + self.batch_size]))
                for start in range(0, len(crops), self.batch_size)
            ]
        ).astype(np.float32)
        if self.format == "keras-h5":  # the Keras file ends before FaceNet's L2 normalisation
            outputs /= np.maximum(np.linalg.norm(outputs, axis=1, keepdims=True), 1e-10)
        return outputs
