"""The search benchmark's harness works (figures are printed by `facedb bench search`, never asserted)."""

import numpy as np
import photos

from facedb import bench
from facedb.bench import ingest
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


def test_ingest_harness_compares_facedb_with_both_references(models, settings, new_database_url):
    detector, embedder = models
    files = [photos.path("face_recognition/obama.jpg"), photos.path("face_api/sample1.jpg")]
    result = ingest.run(files, settings, detector=detector, embedder=embedder, database_url=new_database_url(),
                        say=lambda message: None)
    assert result["photos"] == 2 and result["facedb"]["failed"] == 0
    # the same photos, the same models: every contender finds faces, facedb stores what the stage run found
    assert result["tutorial"]["faces"] >= result["stage_limit"]["faces"] == result["facedb"]["faces"] >= 4
    assert set(result["facedb"]["stage_busy_s"]) == {"read", "decode", "detect", "align", "embed", "write"}
    assert 0 < result["tutorial_faces_found_by_facedb"] <= 1
    assert result["speedup_over_tutorial"] > 0 and result["share_of_stage_limit"] > 0 and result["peak_rss_mb"] > 0
    assert "tutorial" in ingest.table(result)
