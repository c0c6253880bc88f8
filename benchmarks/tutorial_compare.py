"""The FaceNet tutorial's compare.py, as a whole process: the reference for facedb's cold start.

    python benchmarks/tutorial_compare.py PHOTO [PHOTO ...]

What the tutorial does for the photos given: import TensorFlow, build MTCNN (mtcnn 1.0.0's
detect_faces at full resolution, 20 px smallest face), load FaceNet's frozen graph into a
TensorFlow session, embed every face one at a time, print the distance matrix. Same weights
as facedb (the pinned manifest), no database. Time it from outside (whole process, e.g.
`/usr/bin/time -v`), beside `facedb who PHOTO`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedb.config import Settings  # noqa: E402
from facedb.files.images import decode, read_file  # noqa: E402
from facedb.vision.align import crop_face, standardise  # noqa: E402
from facedb.vision.detect import TutorialDetector  # noqa: E402
from facedb.vision.weights import embedder_weights  # noqa: E402


def main(paths: list[str]) -> None:
    import tensorflow as tf

    settings = Settings.load()
    detector = TutorialDetector(settings.min_face_size)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(embedder_weights(settings.model_cache).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    images, embeddings = graph.get_tensor_by_name("input:0"), graph.get_tensor_by_name("embeddings:0")
    vectors, names = [], []
    for path in paths:
        rgb = decode(read_file(Path(path))[0], settings.max_pixels).rgb
        for k, detection in enumerate(detector.every_box(rgb)):  # all that detect_faces returns
            crop = crop_face(rgb, detection, settings.face_margin)
            vectors.append(session.run(embeddings, {images: standardise(crop[None])})[0])  # one face at a time
            names.append(f"{Path(path).name}#{k}")
    print("faces:", ", ".join(names))
    if vectors:
        matrix = np.linalg.norm(np.stack(vectors)[:, None] - np.stack(vectors)[None], axis=-1)
        for name, row in zip(names, matrix):
            print(f"{name:>24} " + " ".join(f"{d:.4f}" for d in row))


if __name__ == "__main__":
    main(sys.argv[1:])
