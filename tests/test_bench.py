"""The search benchmark's harness works (figures are printed by `facedb bench search`, never asserted)."""

import numpy as np
import photos

from facedb import bench
from facedb.bench import ingest
from facedb.config import Settings
from facedb.db.database import Database


def test_synthetic_faces_are_spread_like_real_ones():
    vectors, person, centres = bench.synthetic_faces(200, 4)
    assert vectors.shape == (800, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    pairs = np.triu_indices(len(vectors), 1)
    same = (person[:, None] == person[None])[pairs]
    genuine, impostor = distances[pairs][same], distances[pairs][~same]
    # measured on the FaceNet faces of the test photos: 0.63 +- 0.17 and 1.38 +- 0.10 (1st percentile 1.09)
    assert 0.55 < genuine.mean() < 0.75 and genuine.std() > 0.05
    assert 1.3 < impostor.mean() < 1.45 and 0.08 < impostor.std() < 0.14 and np.percentile(impostor, 1) > 1.0


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


def test_exact_neighbours_in_blocks_match_brute_force():
    rng = np.random.default_rng(0)
    vectors, probes = rng.normal(size=(2500, 64)).astype(np.float32), rng.normal(size=(7, 64)).astype(np.float32)
    expected = np.array([np.argsort(np.linalg.norm(vectors - p, axis=1))[:10] for p in probes])
    assert (bench.search.exact_neighbours(vectors, probes, 10, block=400) == expected).all()
