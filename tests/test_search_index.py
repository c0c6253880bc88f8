"""The search index's two kinds: FACEDB_SEARCH_INDEX chooses (auto by size), `check` says when
the index is not the one chosen, `check --fix` builds it while searches go on, and searches
through the binary index answer as through the halfvec one (candidates re-ranked exactly)."""

import shutil
import threading

import pytest
from sqlalchemy import text

from facedb import samples as photos
from facedb.config import Settings
from facedb.db import search_index
from facedb.db.sql import embedding_index
from facedb.errors import FaceDBError, SettingError

MODEL = "20180408-102900"
INDEX = embedding_index(MODEL)


def _answers(facedb, files):
    return [
        [[(c.name, c.faces_within_threshold, round(c.distance, 5)) for c in face.candidates] for face in answer.faces]
        for answer in facedb.who(files, top_k=5)
    ]


def _plan(facedb, order: str) -> str:
    with facedb.database.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        query = (
            f"EXPLAIN SELECT face_id FROM face_embeddings e WHERE model = '{MODEL}' ORDER BY {order} LIMIT 3"
        ).replace(":q", "(SELECT embedding FROM face_embeddings LIMIT 1)")
        return " ".join(r[0] for r in conn.execute(text(query)))


def test_setting_chooses_by_size_and_rejects_other_words():
    assert search_index.kind_wanted("auto", search_index.BINARY_INDEX_FACES - 1) == "halfvec"
    assert search_index.kind_wanted("auto", search_index.BINARY_INDEX_FACES) == "binary"
    assert search_index.kind_wanted("halfvec", 10**9) == "halfvec"
    assert search_index.kind_wanted("binary", 3) == "binary"
    assert Settings.load(search_index="binary").search_index == "binary"
    with pytest.raises(SettingError, match="FACEDB_SEARCH_INDEX"):
        Settings.load(search_index="ivfflat")


def test_binary_index_built_by_check_fix_answers_as_the_halfvec_one(make_facedb, tmp_path):
    facedb = make_facedb()
    for name, files in photos.ENROLL.items():
        facedb.enroll(name, [photos.path(f) for f in files])
    for group in ("face_api/sample1.jpg", "face_api/sample3.jpg", "insightface/t1.jpg"):
        shutil.copy(photos.path(group), tmp_path)
    shutil.copy(photos.path("face_api/sample1.jpg"), tmp_path / "copy-of-sample1.jpg")
    facedb.index([tmp_path])
    probes = [photos.path(p) for p in [*photos.QUERIES, *photos.STRANGERS]]
    before, dedup_before = _answers(facedb, probes), facedb.dedup()["groups"]
    assert facedb.check().problems == {} and dedup_before

    # the same database, opened with FACEDB_SEARCH_INDEX=binary
    binary = type(facedb)(
        Settings.load(database_url=facedb.database.url, search_index="binary"),
        detector=facedb.detector,
        embedder=facedb.embedder,
    )
    try:
        problems = binary.check().problems
        assert list(problems) == ["search_index_kind"]
        # every model of the manifest has its index (the other one's is empty)
        assert len(problems["search_index_kind"]) == 2
        expected = f"{INDEX}: halfvec, FACEDB_SEARCH_INDEX=binary chooses binary for {facedb.status().faces} faces"
        assert expected in problems["search_index_kind"]

        # searches go on while the index is rebuilt
        answers_during: list = []
        stop = threading.Event()

        def search() -> None:
            while not stop.is_set():
                answers_during.append(_answers(facedb, probes[:2]))

        searcher = threading.Thread(target=search)
        searcher.start()
        progress: list[str] = []
        try:
            fixed = binary.check(fix=True, on_progress=progress.append)
        finally:
            stop.set()
            searcher.join()
        assert fixed.repaired == {"search_index_kind": 2} and fixed.after == {}
        assert answers_during and all(a == before[:2] for a in answers_during)
        with binary.database.engine.connect() as conn:
            definition = search_index.definition(conn, MODEL)
        assert definition is not None and "bit_hamming_ops" in definition
        assert "_building" not in " ".join(_index_names(binary))

        # the searches' order is served by the binary index, and they answer as before
        order = search_index.SearchIndex("binary", 512).order("e.embedding", ":q")
        assert INDEX in _plan(binary, order)
        assert _answers(binary, probes) == before
        assert binary.dedup()["groups"] == dedup_before
        # a FaceDB that chose halfvec sees the binary index as the wrong kind, and builds its own back
        assert list(facedb.check().problems) == ["search_index_kind"]
        assert facedb.check(fix=True).repaired == {"search_index_kind": 2}
        assert facedb.check().problems == {}
        assert _answers(facedb, probes) == before
    finally:
        binary.close()


def _index_names(facedb) -> list[str]:
    with facedb.database.engine.connect() as conn:
        return [
            r[0] for r in conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'face_embeddings'"))
        ]


def test_a_failed_build_leaves_the_index_there_and_one_line(make_facedb, monkeypatch):
    facedb = make_facedb()
    facedb.enroll("Barack Obama", [photos.path("face_recognition/obama.jpg")])
    # a build that fails half way, as one out of memory or disk would: CONCURRENTLY leaves an invalid index
    monkeypatch.setattr(
        search_index,
        "ddl",
        lambda *args, name, **kwargs: (
            f"CREATE INDEX CONCURRENTLY {name} ON face_embeddings ((1 / (face_id - face_id)))"
        ),
    )
    with pytest.raises(FaceDBError, match=f"building the binary search index of {MODEL} failed: .*division by zero"):
        search_index.build(facedb.database.engine, MODEL, 512, "binary", 1)
    assert INDEX in _index_names(facedb) and not any("_building" in n for n in _index_names(facedb))
    (answer,) = facedb.who([photos.path("face_recognition/obama2.jpg")])
    assert [f.identity for f in answer.faces] == ["Barack Obama"]
