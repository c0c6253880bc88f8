"""The pinned TensorFlow models converted to ONNX graphs, each checked against TensorFlow.

Run in a child process by onnx_runtime.py (`python -m facedb.vision.onnx_conversion CACHE_DIR
[MODEL]`): it needs TensorFlow and tf2onnx, which a process that only answers never imports.
FaceNet is converted from its frozen graph with the batch-1 constants freed (as embed.py
does), MTCNN's networks from the graphs facedb runs on TensorFlow: its own P-Net (pnet.py, the
pooled first layer) and mtcnn's R-Net and O-Net. Each converted network must give
TensorFlow's outputs on fixed inputs within `TOLERANCE`, or nothing is cached and the
conversion fails.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .onnx_runtime import OPSET, cache_folder, embedder_folder, new_session, package_version
from .weights import FROZEN_GRAPH_MODEL, embedder_spec

TOLERANCE = 1e-5  # largest |difference| from TensorFlow's outputs on the fixed inputs


def _without_tf2onnx_optimizers() -> None:
    """tf2onnx's own graph optimizers (transposes, constant folding, ...) took FaceNet's
    conversion from 1.7 to 4.3 GB at its peak, and ONNX Runtime optimizes the graph again when
    it loads it: the unoptimized graph ran a batch of 16 crops as fast (328 against 332 ms) and
    gave the same embeddings. So a 4 GB machine can make its first run (issue 30)."""
    from tf2onnx import optimizer

    optimize = optimizer.optimize_graph

    def none(graph, catch_errors=True, optimizers=None):
        return optimize(graph, catch_errors=catch_errors, optimizers={})

    optimizer.optimize_graph = none


def _release() -> None:
    """Between the conversion's steps: what the last one left in reference cycles freed now, and
    freed memory given back to the system. Without it each step's leftovers stayed until a later
    collection, and the default model's conversion peaked at 2,508 MiB on Debian's Python 3.11.2
    (1,940 on a Python 3.11.7 built from source, the same packages; 1,751-1,778 now)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        pass


def convert(cache_dir: Path) -> Path:
    from . import tfruntime

    tfruntime.configure()
    import tensorflow as tf
    import tf2onnx

    _without_tf2onnx_optimizers()
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
        keep(name, proto, expected, inputs)

    def keep(name: str, proto, expected: list[list[np.ndarray]], inputs: list[np.ndarray]) -> None:
        models[name], checked[name] = _checked(name, proto, expected, inputs, "TensorFlow")

    # FaceNet, from its frozen graph at any batch size
    graph_def = facenet_graph_def(cache_dir)
    size = int(embedder_spec(FROZEN_GRAPH_MODEL)["input_size"])

    crops = [rng.standard_normal((n, size, size, 3)).astype(np.float32) for n in (1, 5)]
    # from the graph itself, not a traced function: 1.7 against 2.7 GB at the conversion's peak
    proto, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=["input:0"], output_names=["embeddings:0"], opset=OPSET
    )
    _release()
    # TensorFlow's own answers, from the graph as it is: Grappler's rewrites took 300 MiB more
    plain = tf.compat.v1.ConfigProto()
    plain.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph, config=plain) as session:
        tf.compat.v1.import_graph_def(graph_def, name="")
        expected = [[session.run("embeddings:0", {"input:0": x})] for x in crops]
    del graph_def
    _release()
    keep("facenet", proto, expected, crops)
    del proto
    _release()

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
            "converter": f"tf2onnx {package_version('tf2onnx')}, its optimizers off (ONNX Runtime's at load)",
            "tensorflow": package_version("tensorflow-cpu"),
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
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    _without_tf2onnx_optimizers()
    from .inception_resnet_v1 import build
    from .weights import embedder_weights

    network = build(embedder_weights(cache_dir, model))
    size = int(embedder_spec(model)["input_size"])
    signature = [tf.TensorSpec([None, size, size, 3], tf.float32)]
    graph = tf.function(lambda x: network(x, training=False), input_signature=signature)
    # frozen here and converted as a graph, as FaceNet's is: from_function peaked at 2,560 MiB, this
    # at 2,090 (the same ONNX network but for its input's name, the same embeddings)
    frozen = convert_variables_to_constants_v2(graph.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    names = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    del frozen
    _release()
    proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=names[0], output_names=names[1], opset=OPSET)
    del graph_def
    _release()
    rng = np.random.default_rng(20170512)
    inputs = [rng.standard_normal((n, size, size, 3)).astype(np.float32) for n in (1, 5)]
    expected = [[np.asarray(graph(tf.constant(x)))] for x in inputs]
    data, record = _checked(model, proto, expected, inputs, "Keras")
    folder = embedder_folder(cache_dir, model)
    _store(folder, {"facenet": data}, {"facenet": record})
    return folder


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _checked(
    name: str, proto, expected: list[list[np.ndarray]], inputs: list[np.ndarray], reference: str
) -> tuple[bytes, dict]:
    """The network's bytes and what it was checked against, once ONNX Runtime gives the
    reference's outputs `expected` on `inputs` within TOLERANCE; else the conversion fails."""
    data = proto.SerializeToString()
    session = new_session(data, threads=0)
    got = [session.run(None, {session.get_inputs()[0].name: x}) for x in inputs]
    difference = max(float(np.max(np.abs(e - g))) for es, gs in zip(expected, got) for e, g in zip(es, gs))
    if not difference <= TOLERANCE:
        raise SystemExit(f"{name}: ONNX Runtime differs from {reference} by {difference:.2e} (> {TOLERANCE:g})")
    return data, {"max_abs_difference": difference, "inputs": [list(x.shape) for x in inputs]}


if __name__ == "__main__":
    from ..errors import FaceDBError

    try:
        if len(sys.argv) > 2:
            convert_keras_embedder(Path(sys.argv[1]), sys.argv[2])
        else:
            convert(Path(sys.argv[1]))
    except FaceDBError as exc:
        sys.exit(str(exc))
