"""The search benchmark's harness works (figures are printed by `facedb bench search`, never asserted)."""

import numpy as np
import pytest

from facedb import bench
from facedb import samples as photos
from facedb.bench import ingest
from facedb.config import Settings
from facedb.db import search_index, synthetic
from facedb.db.database import Database
from facedb.db.sql import embedding_index


def test_synthetic_faces_are_spread_like_real_ones():
    archive = bench.SyntheticFaces(200, 4)
    vectors = archive.all()
    person = archive.person_of(np.arange(len(vectors)))
    assert vectors.shape == (800, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    pairs = np.triu_indices(len(vectors), 1)
    same = (person[:, None] == person[None])[pairs]
    genuine, impostor = distances[pairs][same], distances[pairs][~same]
    # measured on the FaceNet faces of the test photos: 0.63 +- 0.17 and 1.38 +- 0.10 (1st percentile 1.09)
    assert 0.55 < genuine.mean() < 0.75 and genuine.std() > 0.05
    assert 1.3 < impostor.mean() < 1.45 and 0.08 < impostor.std() < 0.14 and np.percentile(impostor, 1) > 1.0
    assert archive.spread_measured(50)["same_mean"] == pytest.approx(genuine.mean(), abs=0.05)
    # made block by block, the same faces whoever asks
    assert np.array_equal(bench.SyntheticFaces(200, 4).block(0), vectors[:800])


def test_load_and_measure_each_index_kind_on_a_small_database(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()))
    try:
        archive = bench.SyntheticFaces(300, 5)
        probes, _ = archive.probes(20)
        exact = bench.ExactNeighbours(probes, 10)
        for block in archive.blocks():
            exact.add(block)
        loaded = synthetic.load_faces(database, archive.blocks(), archive.faces, archive.people, say=lambda m: None)
        for kind in ("halfvec", "binary"):
            search_index.build(database.engine, bench.search.MODEL, 512, kind, archive.faces)
            sizes = synthetic.relation_sizes(database)
            assert sizes[embedding_index(bench.search.MODEL)] > 0
            for clients in (1, 3):
                result = bench.measure(
                    database, archive, probes, exact.ids, loaded["first_identity"], ef_search=40, clients=clients
                )
                assert result["identity_recall_at_1"] == 1.0 and result["face_recall_at_10"] >= 0.9
                assert result["p99_ms"] >= result["p50_ms"] > 0 and result["per_second"] > 0
    finally:
        database.close()


def test_ingest_harness_compares_facedb_with_both_references(models, settings, new_database_url):
    detector, embedder = models
    files = [photos.path("face_recognition/obama.jpg"), photos.path("face_api/sample1.jpg")]
    result = ingest.run(
        files,
        settings,
        detector=detector,
        embedder=embedder,
        database_url=new_database_url(),
        other_runtime_url=new_database_url(),
        say=lambda message: None,
    )
    assert result["photos"] == 2 and result["facedb"]["failed"] == 0
    # the same photos, the same models: every contender finds faces, facedb stores what the stage run found
    assert result["tutorial"]["faces"] >= result["stage_limit"]["faces"] == result["facedb"]["faces"] >= 4
    assert set(result["facedb"]["stage_busy_s"]) == {"read", "decode", "detect", "align", "tags", "embed", "write"}
    assert (
        0 < result["detection"]["recall"] <= 1
        and result["detection"]["found"] <= result["detection"]["reference_faces"]
    )
    assert result["speedup_over_tutorial"] > 0 and result["share_of_stage_limit"] > 0 and result["peak_rss_mb"] > 0
    # and on both runtimes, the same faces
    assert [r.split()[0] for r in result["runtimes"]] == ["onnxruntime", "tensorflow"]
    assert {r["faces"] for r in result["runtimes"].values()} == {result["facedb"]["faces"]}
    assert "tutorial" in ingest.table(result) and "on tensorflow" in ingest.table(result)


def test_exact_neighbours_in_blocks_match_brute_force():
    rng = np.random.default_rng(0)
    vectors, probes = rng.normal(size=(2500, 64)).astype(np.float32), rng.normal(size=(7, 64)).astype(np.float32)
    expected = np.array([np.argsort(np.linalg.norm(vectors - p, axis=1))[:10] for p in probes])
    assert (bench.search.exact_neighbours(vectors, probes, 10, block=400) == expected).all()


def test_detect_harness_counts_faces_against_mtcnn_and_false_faces(models, settings):
    from facedb.bench import detect

    files = [str(photos.path("face_recognition/obama.jpg")), str(photos.path("insightface/t1.jpg"))]
    free = [str(photos.path("scikit_image/coffee.png")), str(photos.path("scikit_image/rocket.jpg"))]
    result = detect.run(files, settings, no_faces=free, detector=models[0], say=lambda message: None)
    assert result["photos"] == 2 and result["face_free_photos"] == 2
    faces = result["faces"]
    assert faces["reference_faces"] >= 7 and faces["found"] == faces["reference_faces"] and faces["missed"] == []
    assert set(result["false_faces"]) == {"mtcnn", "facedb"} and result["photos_without_faces"]["facedb"] == []
    assert result["seconds_per_photo"]["facedb"] > 0 and result["seconds_per_photo"]["mtcnn_face_free"] > 0
    table = detect.table(result)
    assert "mtcnn, full resolution" in table and "facedb found" in table


def test_matching_is_one_to_one_by_overlap():
    from facedb.bench.detect import compare
    from facedb.faces import Detection

    def face(x, y=0.0):
        return Detection((x, y, 100.0, 100.0), ((0.0, 0.0),) * 5, 0.99)

    result = compare({"a": [face(0), face(300)]}, {"a": [face(5), face(8), face(900)]})
    assert result["found"] == 1 and len(result["missed"]) == 1 and len(result["extra"]) == 2
