"""`facedb calibrate`: a threshold from the archive's own people, stored and then used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import run

from facedb import samples as photos
from facedb.config import DEFAULT_PROPOSE_THRESHOLD, DEFAULT_THRESHOLD


@pytest.fixture(scope="module")
def calibrated_template(labelled_folders, new_database_url, models):
    """A database with the labelled people enrolled and the strangers indexed (copied per test)."""
    from facedb.api import FaceDB
    from facedb.config import Settings

    url = new_database_url()
    facedb = FaceDB(Settings.load(database_url=url), detector=models[0], embedder=models[1])
    facedb.enroll_from_folders(labelled_folders / "people")
    facedb.index([labelled_folders / "strangers"])
    facedb.close()
    return url


def test_too_few_pairs_keeps_the_default_and_says_what_is_needed(make_facedb, calibrated_template):
    facedb = make_facedb(calibrated_template)
    result = facedb.calibrate(far=0.001)
    # 20 enrolled faces of 5 people: 61 same-person pairs, 129 pairs across people; the faces of
    # nobody (the strangers' photos) are not counted unless asked
    assert result.genuine_pairs == 61 and result.impostor_pairs == result.impostor_pairs_across_identities == 129
    assert result.faces_of_nobody is None and result.impostor_pairs_against_nobody == 0
    asked = facedb.calibrate(far=0.001, with_unlabelled=True)
    assert asked.faces_of_nobody >= 30 and asked.impostor_pairs_against_nobody == 20 * asked.faces_of_nobody
    from sqlalchemy import text

    with facedb.database.engine.connect() as conn:
        stranger = conn.execute(
            text(
                "SELECT f.id FROM faces f LEFT JOIN face_identities fi ON fi.face_id = f.id "
                "WHERE fi.face_id IS NULL ORDER BY f.id LIMIT 1"
            )
        ).scalar_one()
    facedb.reject(stranger, "Franck")  # a person's "not Franck": 11 pairs against Franck's faces
    assert facedb.calibrate(far=0.001).impostor_pairs_against_rejected == 11
    assert result.enough is False and result.stored is False
    assert result.needed.to_json() == {"genuine_pairs": 20, "impostor_pairs": 3000}
    assert facedb.threshold().source == "default" and facedb.threshold().value == DEFAULT_THRESHOLD


def test_calibration_is_stored_and_used_by_who_clustering_and_dedup(make_facedb, calibrated_template):
    facedb = make_facedb(calibrated_template)
    dry = facedb.calibrate(far=0.01, dry_run=True, with_unlabelled=True)
    assert dry.enough and not dry.stored and facedb.threshold().source == "default"
    result = facedb.calibrate(far=0.01, with_unlabelled=True)
    assert result.stored and result.far_observed <= 0.01
    threshold = result.threshold
    assert 0.8 < threshold < 1.4 and result.miss_rate <= 0.05
    low, high = result.miss_rate_ci
    assert low <= result.miss_rate <= high
    in_force = facedb.threshold()
    assert in_force.source == "calibrated" and in_force.value == threshold
    assert in_force.calibration.evidence["impostor_pairs"] == result.impostor_pairs
    (answer,) = facedb.who([photos.path("face_recognition/obama2.jpg")])
    assert answer.faces[0].threshold == threshold and answer.faces[0].identity == "Barack Obama"
    assert facedb.cluster_params().propose_threshold == pytest.approx(threshold - 0.1)  # stricter, as by default
    assert facedb.dedup(tiers=(5,))["thresholds"]["identity_threshold"] == threshold
    assert facedb.status().threshold.source == "calibrated"


def test_a_threshold_that_is_set_wins_over_the_calibrated_one(make_facedb, calibrated_template):
    facedb = make_facedb(calibrated_template)
    facedb.calibrate(far=0.01, with_unlabelled=True)
    strict = make_facedb(calibrated_template, threshold=0.5, propose_threshold=0.8)
    strict.calibrate(far=0.01, with_unlabelled=True)
    assert strict.threshold().source == "setting" and strict.threshold().value == 0.5
    assert strict.cluster_params().propose_threshold == 0.8
    fresh = make_facedb()
    assert fresh.cluster_params().propose_threshold == DEFAULT_PROPOSE_THRESHOLD


def test_calibration_figures_match_a_count_by_hand():
    from facedb.calibrate import FaceSample, calibrate

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(30, 64))
    identity = np.repeat(np.arange(30), 4)
    placed = centres[identity] + rng.normal(scale=0.35, size=(120, 64))
    placed /= np.linalg.norm(placed, axis=1, keepdims=True)
    strangers = rng.normal(size=(60, 64))
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
    rejected_from = np.arange(10) % 30  # the first ten strangers were each rejected from one person
    result = calibrate(
        FaceSample(np.arange(120), identity, [f"p{k}" for k in range(120)], placed.astype(np.float32)),
        FaceSample(np.arange(10), rejected_from, [f"r{k}" for k in range(10)], strangers[:10].astype(np.float32)),
        FaceSample(np.arange(50), np.full(50, -1), [f"s{k}" for k in range(50)], strangers[10:].astype(np.float32)),
        far=0.001,
    )
    d = np.linalg.norm(placed[:, None] - placed[None], axis=2)
    i, j = np.triu_indices(120, 1)
    same = identity[i] == identity[j]
    genuine, across = d[i, j][same], d[i, j][~same]
    refused = np.concatenate(
        [np.linalg.norm(placed[identity == who] - strangers[k], axis=1) for k, who in enumerate(rejected_from)]
    )
    nobody = np.linalg.norm(placed[:, None] - strangers[None, 10:], axis=2).ravel()
    impostor = np.concatenate([across, refused, nobody[nobody > 0.35]])
    assert result["impostor_pairs_against_rejected"] == len(refused) == 40
    assert result["genuine_pairs"] == len(genuine) == 180
    assert result["impostor_pairs"] == len(impostor) and result["enough"]
    t = result["threshold"]
    assert (impostor <= t).mean() <= 0.001 < (impostor <= np.sort(impostor)[int(0.001 * len(impostor))] + 1e-9).mean()
    assert result["miss_rate"] == pytest.approx((genuine > t).mean())


def test_calibrate_from_the_command_line(new_database_url, calibrated_template, tmp_path):
    url = new_database_url(calibrated_template)
    short = run("--database-url", url, "calibrate", check_rc=1)
    assert "not enough to calibrate" in short.stdout and "3000 impostor pairs" in short.stdout
    done = run("--database-url", url, "calibrate", "--far", "0.01", "--with-unlabelled", "--json")
    assert json.loads(done.stdout)["stored"] is True
    status = run("--database-url", url, "status", "--json")
    assert json.loads(status.stdout)["threshold"]["source"] == "calibrated"
    assert "calibrated" in run("--database-url", url, "status").stdout
