"""Reads from PostgreSQL's own streaming replicas (FACEDB_READ_URLS), writes to the primary.

A read goes to a replica only once that replica has replayed everything this process has
committed on the primary (its WAL position after the last write), so whoever just wrote reads
what they wrote; until then it goes to the primary. Replicas take turns. One that does not
answer is left for RETRY_S seconds (one warning), and its reads go to the others or to the
primary: a replica that stops costs no answer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

RETRY_S = 30.0
CONNECT_TIMEOUT_S = 3


def lsn_number(lsn: str | None) -> int:
    """A WAL position ('16/B374D848') as a number that orders as positions do."""
    if not lsn:
        return 0
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass
class Replica:
    engine: Engine
    name: str  # its URL without the password, for messages
    replayed: int = 0  # the WAL position it had replayed when last asked
    down_until: float = 0.0  # not asked again before this (time.monotonic())
    warned: bool = False  # its not answering was said once; said again only after it answered


class Reads:
    """Where a read goes: `connect()` gives a connection to a replica that has caught up with
    this process's writes, else to the primary."""

    def __init__(self, primary: Engine, urls: list[str], names: list[str]) -> None:
        self.primary = primary
        self.replicas = [
            Replica(
                create_engine(
                    url,
                    pool_size=5,
                    max_overflow=5,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
                ),
                name,
            )
            for url, name in zip(urls, names)
        ]
        self._lock = threading.Lock()
        self._wrote = False  # the primary committed since its WAL position was last read
        self._written = 0  # the primary's WAL position after this process's last write
        self._turn = 0
        if self.replicas:
            event.listen(primary, "commit", self._committed)

    def _committed(self, conn: Connection) -> None:
        # Only a transaction that wrote moves this process's position: one that only read (most
        # of them, when a lagging replica sends reads to the primary) would otherwise make the
        # next read wait for whatever other processes wrote meanwhile. Asked on the committing
        # connection itself, before its COMMIT, through the driver so no event runs again.
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:
            self._wrote = True
            return
        try:
            cursor = dbapi.cursor()
            try:
                cursor.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
                row = cursor.fetchone()
            finally:
                cursor.close()
        except psycopg2.Error:  # an aborted transaction: its COMMIT will say so; assume it wrote
            row = None
        if row is None or row[0]:
            self._wrote = True

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        conn = self._replica_connection() if self.replicas else None
        if conn is None:
            conn = self.primary.connect()
        with conn:
            yield conn

    def _replica_connection(self) -> Connection | None:
        if self._wrote:
            self._wrote = False
            with self.primary.connect() as conn:
                position = lsn_number(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar())
            with self._lock:
                self._written = max(self._written, position)
        with self._lock:
            self._turn = (self._turn + 1) % len(self.replicas)
            order = self.replicas[self._turn :] + self.replicas[: self._turn]
        now = time.monotonic()
        for replica in order:
            if replica.down_until > now:
                continue
            try:
                conn = replica.engine.connect()
            except SQLAlchemyError as exc:
                self._down(replica, exc)
                continue
            self._answers(replica)
            if replica.replayed >= self._written:
                return conn
            try:
                replica.replayed = lsn_number(conn.execute(text("SELECT pg_last_wal_replay_lsn()::text")).scalar())
                conn.rollback()
            except SQLAlchemyError as exc:
                conn.close()
                self._down(replica, exc)
                continue
            if replica.replayed >= self._written:
                return conn
            conn.close()
        return None

    def _down(self, replica: Replica, exc: Exception) -> None:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        with self._lock:
            replica.down_until = time.monotonic() + RETRY_S
            warn, replica.warned = not replica.warned, True
        if warn:
            log.warning(
                "read replica %s does not answer (%s): reading from the others or the primary, trying it again every %.0f s",
                replica.name,
                reason,
                RETRY_S,
            )

    def _answers(self, replica: Replica) -> None:
        if replica.warned:
            replica.warned, replica.down_until = False, 0.0
            log.warning("read replica %s answers again", replica.name)

    def status(self) -> list[dict]:
        """Each replica: whether it answers and how far behind this process's writes it is."""
        found = []
        for replica in self.replicas:
            try:
                with replica.engine.connect() as conn:
                    row = conn.execute(
                        text(
                            "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn, "
                            "extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS behind_s"
                        )
                    ).one()
                found.append({"url": replica.name, "answers": True, "standby": row.standby, "behind_s": row.behind_s})
            except SQLAlchemyError as exc:
                found.append({"url": replica.name, "answers": False, "reason": " ".join(str(exc).split())[:200]})
        return found

    def close(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()
