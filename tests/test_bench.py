"""The search benchmark's harness works (figures are printed by `facedb bench search`, never asserted)."""

import numpy as np

from facedb import bench
from facedb.config import Settings
from facedb.db.database import Database


def test_synthetic_faces_are_clustered_like_real_ones():
    vectors, person, centres = bench.synthetic_faces(50, 6)
    assert vectors.shape == (300, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    same = np.linalg.norm(vectors[0] - vectors[1])
    other = np.linalg.norm(vectors[0] - vectors[6])
    assert 0.5 < same < 1.0 < 1.2 < other  # as measured on FaceNet faces: 0.6-0.9 vs 1.07+


def test_load_and_measure_on_a_small_database(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()))
    try:
        vectors, person, centres = bench.synthetic_faces(200, 5)
        timings = bench.load(database, vectors, person, say=lambda message: None)
        assert timings["index_mb"] > 0
        result = bench.measure(database, vectors, person, centres, queries=20, ef_search=40)
        assert result["identity_recall_at_1"] == 1.0 and result["face_recall_at_10"] >= 0.9
    finally:
        database.close()
