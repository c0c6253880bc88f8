"""FaceNet 20170512-110547 (Inception-ResNet-v1, MS-Celeb-1M, 128-d) rebuilt in Keras 3.

The weights are published as a Keras 2.1.2 full-model file (facenet_keras.h5) that Keras 3
cannot load: its 21 residual "ScaleSum" layers are Lambdas holding marshalled Python 3.6
bytecode. So the graph is rebuilt here from the file's own model_config (every layer keeps its
name and configuration; the Lambdas become ScaleSum) and the weights are copied by name with
h5py. `reference_layers` recomputes the same graph in plain numpy straight from the file, so
that a test can check the port layer by layer against something that shares no Keras code.

This module is imported only where the model runs on TensorFlow or is being converted; Keras
and TensorFlow are still imported lazily so that `prewhiten` stays cheap to import.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

INPUT_SIZE = 160
EMBEDDING_SIZE = 128

# sha256 of the marshalled code object that every *_ScaleSum Lambda of the file holds. Its
# bytecode (CPython 3.6) disassembles to `lambda inputs, scale: inputs[0] + inputs[1] * scale`;
# any other function in a Lambda would make ScaleSum a wrong translation, so it is refused.
_SCALE_SUM_CODE_SHA256 = "995e5e003908dbb5285d4a2c51d19e0ffc500f757f2055f0ab6c960fc49a4d95"

# Keys of each Keras 2 layer config that decide what the layer computes, and those that matter
# only to training (initialisers, regularisers, constraints) and are dropped. A key in neither
# means the file is not the one this was written for: refuse rather than guess.
_COMPUTE_KEYS: dict[str, set[str]] = {
    "InputLayer": {"batch_input_shape", "dtype", "sparse"},
    "Conv2D": {
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "data_format",
        "dilation_rate",
        "activation",
        "use_bias",
    },
    "BatchNormalization": {"axis", "momentum", "epsilon", "center", "scale"},
    "Activation": {"activation"},
    "MaxPooling2D": {"pool_size", "strides", "padding", "data_format"},
    "Concatenate": {"axis"},
    "Lambda": {"function", "function_type", "output_shape", "output_shape_type", "arguments"},
    "GlobalAveragePooling2D": {"data_format"},
    "Dropout": {"rate", "noise_shape", "seed"},
    "Dense": {"units", "activation", "use_bias"},
}
_TRAINING_KEYS = {
    "name",
    "trainable",
    "kernel_initializer",
    "bias_initializer",
    "beta_initializer",
    "gamma_initializer",
    "moving_mean_initializer",
    "moving_variance_initializer",
    "kernel_regularizer",
    "bias_regularizer",
    "beta_regularizer",
    "gamma_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "beta_constraint",
    "gamma_constraint",
}
_WEIGHTED = {"Conv2D", "BatchNormalization", "Dense"}


def prewhiten(crops: np.ndarray) -> np.ndarray:
    """davidsandberg/facenet's facenet.prewhiten for each image of [N, H, W, C] (uint8 or float)
    -> float32: zero mean, unit standard deviation, the deviation floored at 1/sqrt(size) so
    that a flat image is not divided by zero."""
    x = np.asarray(crops, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"prewhiten wants [N, H, W, C] crops, not shape {x.shape}")
    axes = (1, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    std_adj = np.maximum(std, 1.0 / math.sqrt(x[0].size))
    return ((x - mean) / std_adj).astype(np.float32)


def build(h5_path: Path) -> keras.Model:
    """The model of facenet_keras.h5 with its weights: float32 [N, 160, 160, 3] prewhitened
    crops -> [N, 128] raw embeddings (not L2-normalised)."""
    import h5py
    import keras

    scale_sum = _scale_sum_class()
    with h5py.File(h5_path, "r") as f:
        layers, inputs, outputs = _model_config(f)
        tensors: dict[str, Any] = {}
        for spec in layers:
            name, kind, config = spec["name"], spec["class_name"], _compute_config(spec)
            if kind == "InputLayer":
                shape = tuple(config["batch_input_shape"][1:])
                tensors[name] = keras.Input(shape=shape, dtype=config["dtype"], name=name)
                continue
            layer = _keras_layer(keras, scale_sum, name, kind, config)
            args = [tensors[n] for n in _inbound(spec)]
            tensors[name] = layer(args if len(args) > 1 else args[0])
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{h5_path}: inputs {inputs}, outputs {outputs}; expected one of each")
        model = keras.Model(tensors[inputs[0]], tensors[outputs[0]], name="facenet_20170512")
        _copy_weights(model, f["model_weights"])
    if tuple(model.output.shape) != (None, EMBEDDING_SIZE):
        raise ValueError(f"{h5_path}: the model gives {model.output.shape}, not (None, {EMBEDDING_SIZE})")
    return model


def reference_layers(h5_path: Path, crop: np.ndarray, upto: int | None = None) -> dict[str, np.ndarray]:
    """Numpy forward pass of one prewhitened crop [1, 160, 160, 3] straight from the file (no
    Keras): each layer's output (float64) by name, in graph order, up to and including the
    `upto`-th layer with weights and the weightless layers after it (None: the whole graph)."""
    import h5py

    x = np.asarray(crop, dtype=np.float64)
    if x.shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"reference_layers wants one crop [1, 160, 160, 3], not shape {x.shape}")
    out: dict[str, np.ndarray] = {}
    weighted = 0
    with h5py.File(h5_path, "r") as f:
        layers, _, _ = _model_config(f)
        group = f["model_weights"]
        for spec in layers:
            name, kind, config = spec["name"], spec["class_name"], _compute_config(spec)
            if kind in _WEIGHTED:
                if upto is not None and weighted == upto:
                    break
                weighted += 1
            if kind == "InputLayer":
                out[name] = x
                continue
            args = [out[n] for n in _inbound(spec)]
            weights = {w: np.asarray(group[name][w], dtype=np.float64) for w in _weight_names(group[name])}
            out[name] = _numpy_layer(kind, config, args, weights)
    return out


def __getattr__(name: str) -> Any:
    # ScaleSum is a Keras layer; making it on first use keeps Keras out of `import prewhiten`.
    if name == "ScaleSum":
        return _scale_sum_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _scale_sum_class() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="facedb")
    class ScaleSum(keras.layers.Layer):
        """inputs[0] + scale * inputs[1]: the residual sum of the Inception-ResNet blocks."""

        def __init__(self, scale: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.scale = float(scale)

        def call(self, inputs: list[Any]) -> Any:
            shortcut, residual = inputs
            return shortcut + self.scale * residual

        def compute_output_shape(self, input_shape: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
            return tuple(input_shape[0])

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "scale": self.scale}

    return ScaleSum


def _model_config(f: Any) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    raw = f.attrs["model_config"]
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    if config.get("class_name") != "Model":
        raise ValueError(f"model_config is a {config.get('class_name')}, not a functional Model")
    body = config["config"]
    seen: set[str] = set()
    for spec in body["layers"]:
        # One call per layer and inputs defined before use: what the single pass of build needs.
        if len(spec["inbound_nodes"]) > 1:
            raise ValueError(f"{spec['name']} is called {len(spec['inbound_nodes'])} times; expected once")
        for parent in _inbound(spec):
            if parent not in seen:
                raise ValueError(f"{spec['name']} uses {parent} before it is defined")
        if spec["name"] in seen:
            raise ValueError(f"two layers are named {spec['name']}")
        seen.add(spec["name"])
    return body["layers"], [t[0] for t in body["input_layers"]], [t[0] for t in body["output_layers"]]


def _inbound(spec: dict[str, Any]) -> list[str]:
    nodes = spec["inbound_nodes"]
    if not nodes:
        return []
    names = []
    for parent, node_index, tensor_index, kwargs in nodes[0]:
        if node_index != 0 or tensor_index != 0 or kwargs:
            raise ValueError(
                f"{spec['name']}: inbound {parent} {node_index} {tensor_index} {kwargs} is not a plain tensor"
            )
        names.append(parent)
    return names


def _compute_config(spec: dict[str, Any]) -> dict[str, Any]:
    kind, config = spec["class_name"], spec["config"]
    if kind not in _COMPUTE_KEYS:
        raise ValueError(f"{spec['name']}: no translation for layer class {kind}")
    unknown = set(config) - _COMPUTE_KEYS[kind] - _TRAINING_KEYS
    if unknown:
        raise ValueError(f"{spec['name']}: unexpected {kind} config keys {sorted(unknown)}")
    compute = {k: v for k, v in config.items() if k in _COMPUTE_KEYS[kind]}
    if kind == "Lambda":
        code = base64.b64decode(compute["function"][0])
        if compute["function_type"] != "lambda" or hashlib.sha256(code).hexdigest() != _SCALE_SUM_CODE_SHA256:
            raise ValueError(f"{spec['name']}: this Lambda is not inputs[0] + inputs[1] * scale")
        if set(compute["arguments"]) != {"scale"}:
            raise ValueError(f"{spec['name']}: Lambda arguments {compute['arguments']}, expected only scale")
    if compute.get("data_format", "channels_last") != "channels_last":
        raise ValueError(f"{spec['name']}: data_format {compute['data_format']}")
    if kind in ("Conv2D", "Dense") and compute["activation"] not in ("linear", "relu"):
        raise ValueError(f"{spec['name']}: activation {compute['activation']}")
    if kind == "Conv2D" and tuple(compute["dilation_rate"]) != (1, 1):
        raise ValueError(f"{spec['name']}: dilation {compute['dilation_rate']}")
    return compute


def _keras_layer(keras: Any, scale_sum: type, name: str, kind: str, c: dict[str, Any]) -> Any:
    layers = keras.layers
    if kind == "Conv2D":
        return layers.Conv2D(
            c["filters"],
            tuple(c["kernel_size"]),
            strides=tuple(c["strides"]),
            padding=c["padding"],
            activation=c["activation"],
            use_bias=c["use_bias"],
            name=name,
        )
    if kind == "BatchNormalization":
        return layers.BatchNormalization(
            axis=c["axis"],
            momentum=c["momentum"],
            epsilon=c["epsilon"],
            center=c["center"],
            scale=c["scale"],
            name=name,
        )
    if kind == "Activation":
        return layers.Activation(c["activation"], name=name)
    if kind == "MaxPooling2D":
        return layers.MaxPooling2D(tuple(c["pool_size"]), strides=tuple(c["strides"]), padding=c["padding"], name=name)
    if kind == "Concatenate":
        return layers.Concatenate(axis=c["axis"], name=name)
    if kind == "Lambda":
        return scale_sum(c["arguments"]["scale"], name=name)
    if kind == "GlobalAveragePooling2D":
        return layers.GlobalAveragePooling2D(name=name)
    if kind == "Dropout":
        return layers.Dropout(c["rate"], noise_shape=c["noise_shape"], seed=c["seed"], name=name)
    if kind == "Dense":
        return layers.Dense(c["units"], activation=c["activation"], use_bias=c["use_bias"], name=name)
    raise ValueError(f"{name}: no translation for layer class {kind}")


def _weight_names(layer_group: Any) -> Iterator[str]:
    # Keras 2 stores "layer/kernel:0"; the dataset sits at that path inside the layer's group.
    for raw in layer_group.attrs["weight_names"]:
        yield raw.decode() if isinstance(raw, bytes) else str(raw)


def _copy_weights(model: Any, group: Any) -> None:
    """Each file weight into the Keras variable of the same layer and name (kernel, bias, beta,
    moving_mean ...), never by position: Keras 3 orders BatchNormalization's variables its own
    way and drops gamma when scale is False, so positional copying could silently swap them."""
    stored = {}
    for raw in group.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if len(group[name].attrs["weight_names"]):
            stored[name] = group[name]
    copied: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in stored:
            raise ValueError(f"{layer.name} has weights in Keras but none in the file")
        file_weights = {}
        for full in _weight_names(stored[layer.name]):
            short = full.rsplit("/", 1)[-1].split(":")[0]
            if short in file_weights:
                raise ValueError(f"{layer.name}: the file has {short} twice")
            file_weights[short] = np.asarray(stored[layer.name][full])
        variables = {v.name: v for v in layer.weights}
        if set(variables) != set(file_weights) or len(variables) != len(layer.weights):
            raise ValueError(f"{layer.name}: Keras has {sorted(variables)}, the file {sorted(file_weights)}")
        for short, value in file_weights.items():
            if tuple(variables[short].shape) != value.shape:
                raise ValueError(f"{layer.name}/{short}: Keras {variables[short].shape}, file {value.shape}")
            variables[short].assign(value.astype(np.float32))
        copied.add(layer.name)
    missing = sorted(set(stored) - copied)
    if missing:
        raise ValueError(f"weights in the file for layers the model lacks: {missing}")


def _numpy_layer(kind: str, c: dict[str, Any], args: list[np.ndarray], w: dict[str, np.ndarray]) -> np.ndarray:
    def weight(short: str) -> np.ndarray:
        (value,) = [v for k, v in w.items() if k.rsplit("/", 1)[-1].split(":")[0] == short]
        return value

    activations: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "linear": lambda v: v,
        "relu": lambda v: np.maximum(v, 0.0),
    }
    if kind == "Conv2D":
        y = _conv2d(args[0], weight("kernel"), tuple(c["strides"]), c["padding"])
        if c["use_bias"]:
            y = y + weight("bias")
        return activations[c["activation"]](y)
    if kind == "BatchNormalization":
        if c["axis"] not in (-1, args[0].ndim - 1):
            raise ValueError(f"BatchNormalization over axis {c['axis']}")
        y = (args[0] - weight("moving_mean")) / np.sqrt(weight("moving_variance") + c["epsilon"])
        if c["scale"]:
            y = y * weight("gamma")
        if c["center"]:
            y = y + weight("beta")
        return y
    if kind == "Activation":
        return activations[c["activation"]](args[0])
    if kind == "MaxPooling2D":
        return _max_pool(args[0], tuple(c["pool_size"]), tuple(c["strides"]), c["padding"])
    if kind == "Concatenate":
        return np.concatenate(args, axis=c["axis"])
    if kind == "Lambda":
        return args[0] + c["arguments"]["scale"] * args[1]
    if kind == "GlobalAveragePooling2D":
        return args[0].mean(axis=(1, 2))
    if kind == "Dropout":
        return args[0]
    if kind == "Dense":
        y = args[0] @ weight("kernel")
        if c["use_bias"]:
            y = y + weight("bias")
        return activations[c["activation"]](y)
    raise ValueError(f"no numpy reference for layer class {kind}")


def _pad(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], padding: str, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    if padding != "same":
        raise ValueError(f"padding {padding}")
    # TensorFlow's SAME: output ceil(n / stride), any odd padding pixel goes after (bottom/right).
    pads = [(0, 0)]
    for n, k, s in zip(x.shape[1:3], size, strides):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    pads.append((0, 0))
    return np.pad(x, pads, constant_values=value)


def _windows(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int]) -> np.ndarray:
    # [N, H', W', C, kh, kw] views of every window, then the strided ones.
    view = np.lib.stride_tricks.sliding_window_view(x, size, axis=(1, 2))
    return view[:, :: strides[0], :: strides[1]]


def _conv2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], padding: str) -> np.ndarray:
    kh, kw, cin, cout = kernel.shape
    windows = _windows(_pad(x, (kh, kw), strides, padding, 0.0), (kh, kw), strides)
    n, oh, ow = windows.shape[:3]
    # im2col: rows of (kh, kw, cin) patches against the kernel laid out the same way.
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin)
    return (patches @ kernel.reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)


def _max_pool(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], padding: str) -> np.ndarray:
    return _windows(_pad(x, size, strides, padding, -np.inf), size, strides).max(axis=(4, 5))
