"""Each model's search index, of one of two kinds, and how a search asks it.

"halfvec": HNSW on the embeddings at half precision (about 1.4 kB a face); its order is as
exact as the distances it reports. "binary": HNSW on one bit a dimension (`binary_quantize`,
64 bytes a 512-d vector, about 0.37 kB a face); its order is rough, so a search takes more
candidates and re-ranks them on the stored embeddings. FACEDB_SEARCH_INDEX chooses; "auto"
takes binary from BINARY_INDEX_FACES faces of a model on, where the halfvec graph (14 GB at ten
million faces) no longer stays in memory beside the tables (docs/performance.md).
`facedb check` says when the index is not the kind chosen, and `check --fix` builds it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import FaceDBError
from .sql import embedding_index, model_literal

BINARY_INDEX_FACES = 2_000_000

# With 100 candidates re-ranked for the 10 nearest, recall@10 against exact search was 1.000 on
# 100,000 synthetic faces and 0.998 at ten million. Who's window of 60 rows takes 120: at a
# million faces 240 made it 2-3 times slower than the halfvec index, for the same recall
# (identity recall@1 and face recall@10 1.000 with 240, 120 and 60; docs/performance.md).
BINARY_CANDIDATES = 100
BINARY_CANDIDATES_PER_RESULT = 2

# Bytes of maintenance_work_mem a face for pgvector to build the graph in memory (it builds
# much slower once the graph spills): the vector, 32 neighbours of 16 bytes on the lowest
# layer, the element and its heap pointers. A build asks for at most half this machine's
# memory (an embedded server's; an external server needs as much free).
_BUILD_BYTES_PER_FACE = {"halfvec": 1800, "binary": 800}


def kind_wanted(setting: str, faces: int) -> str:
    """The kind FACEDB_SEARCH_INDEX chooses for a model with this many faces."""
    if setting == "auto":
        return "binary" if faces >= BINARY_INDEX_FACES else "halfvec"
    return setting


def kind_of(definition: str) -> str:
    """The kind of a model's search index, from its definition (pg_indexes.indexdef)."""
    return "binary" if "bit_hamming_ops" in definition else "halfvec"


def _indexed(kind: str, dimension: int) -> str:
    if kind == "binary":
        return f"(binary_quantize(embedding)::bit({int(dimension)})) bit_hamming_ops"
    return f"(embedding::halfvec({int(dimension)})) halfvec_l2_ops"


def ddl(
    model: str, dimension: int, kind: str = "halfvec", *, name: str | None = None, concurrently: bool = False
) -> str:
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}{name or embedding_index(model)} ON face_embeddings "
        f"USING hnsw ({_indexed(kind, dimension)}) WITH (m = 16, ef_construction = 64) "
        f"WHERE model = {model_literal(model)}"
    )


def parts(model: str, dimension: int, kind: str) -> tuple[str, ...]:
    """What the live definition of a sound index of this kind contains (`facedb check`)."""
    operators = (
        ("binary_quantize(embedding)", f"::bit({int(dimension)})", "bit_hamming_ops")
        if kind == "binary"
        else (f"::halfvec({int(dimension)})", "halfvec_l2_ops")
    )
    return ("USING hnsw", *operators, "m='16'", "ef_construction='64'", model)


@dataclass(frozen=True)
class SearchIndex:
    """A model's search index as a query asks it: candidates in the index's order (a query
    uses the partial index only when it names the model as a constant and orders by exactly
    the indexed expression), then re-ranked on the stored embeddings."""

    kind: str
    dimension: int

    def order(self, column: str, other: str) -> str:
        """ORDER BY expression the index serves: `column` and `other` are SQL (never user text)."""
        d = int(self.dimension)
        if self.kind == "binary":
            return f"binary_quantize({column})::bit({d}) <~> binary_quantize({other})::bit({d})"
        return f"{column}::halfvec({d}) <-> {other}::halfvec({d})"

    def candidates(self, k: int) -> int:
        """Candidates to re-rank for the k nearest."""
        return k if self.kind == "halfvec" else max(BINARY_CANDIDATES, BINARY_CANDIDATES_PER_RESULT * k)


# The kind of each model's index, asked again after this many seconds: `check --fix` may have
# rebuilt it in another process (a stale kind costs speed, never a wrong distance).
_RECHECK_S = 30.0
_KINDS: dict[tuple[str, str], tuple[float, str]] = {}


def search_index(conn: Connection, model: str, dimension: int) -> SearchIndex:
    key = (conn.engine.url.render_as_string(hide_password=True), model)
    asked = _KINDS.get(key)
    if asked is None or time.monotonic() - asked[0] > _RECHECK_S:
        asked = (time.monotonic(), kind_of(definition(conn, model) or ""))
        _KINDS[key] = asked
    return SearchIndex(asked[1], dimension)


def definition(conn: Connection, model: str) -> str | None:
    return conn.execute(
        text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": embedding_index(model)}
    ).scalar()


def build(
    engine: Engine, model: str, dimension: int, kind: str, faces: int, say: Callable[[str], None] | None = None
) -> float:
    """Build a model's search index of `kind` (replacing the one there) while searches go on:
    CONCURRENTLY under another name, then swapped in in one short transaction. A build that
    dies leaves only the other name, which the next build drops first. `say` hears how far the
    build is every few seconds. Returns its seconds."""
    name = embedding_index(model)
    building = name[:54] + "_building"
    memory_mb = min(psutil.virtual_memory().total // 2**21, 64 + faces * _BUILD_BYTES_PER_FACE[kind] // 2**20)
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {building}"))
        conn.execute(text(f"SET maintenance_work_mem = '{int(memory_mb)}MB'"))
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        done = threading.Event()
        watcher = threading.Thread(
            target=_report_progress, args=(engine, pid, done, say, f"{kind} search index of {model}"), daemon=True
        )
        if say is not None:
            watcher.start()
        try:
            conn.execute(text(ddl(model, dimension, kind, name=building, concurrently=True)))
        except SQLAlchemyError as exc:
            # the half-built index is left invalid: drop it (or the next build will), searches
            # go on with the old one
            try:
                conn.execute(text(f"DROP INDEX IF EXISTS {building}"))
            except SQLAlchemyError:
                pass
            reason = " ".join(str(getattr(exc, "orig", exc)).split())[:300]
            raise FaceDBError(f"building the {kind} search index of {model} failed: {reason}") from None
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        conn.execute(text(f"ALTER INDEX {building} RENAME TO {name}"))
        conn.execute(text("ANALYZE face_embeddings"))
    _KINDS.clear()
    return time.perf_counter() - started


def _report_progress(
    engine: Engine, pid: int, done: threading.Event, say: Callable[[str], None] | None, what: str, every_s: float = 5.0
) -> None:
    """What pg_stat_progress_create_index says of the build in backend `pid`, every `every_s`."""
    assert say is not None
    started = time.monotonic()
    with engine.connect() as conn:
        while not done.wait(every_s):
            row = conn.execute(
                text(
                    "SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                    "FROM pg_stat_progress_create_index WHERE pid = :pid"
                ),
                {"pid": pid},
            ).first()
            conn.rollback()  # a fresh snapshot of the statistics each time
            if row is None:
                continue
            elapsed = time.monotonic() - started
            if row.tuples_total:
                amount = f"{row.tuples_done:,}/{row.tuples_total:,} faces"
            elif row.blocks_total:
                amount = f"{row.blocks_done:,}/{row.blocks_total:,} blocks"
            else:
                amount = f"{row.tuples_done:,} faces"
            say(f"building the {what}: {row.phase}, {amount}, {elapsed:.0f} s")


_PGVECTOR_VERSIONS: dict[str, tuple[int, ...]] = {}


def _pgvector_version(conn: Connection) -> tuple[int, ...]:
    """pgvector's version, asked once per database."""
    key = conn.engine.url.render_as_string(hide_password=True)
    if key not in _PGVECTOR_VERSIONS:
        version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar() or "0"
        _PGVECTOR_VERSIONS[key] = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return _PGVECTOR_VERSIONS[key]


def of_model(alias: str, model: str) -> str:
    """`alias.model = '<model>'` as the partial search indexes need it (a constant, checked)."""
    return f"{alias}.model = {model_literal(model)}"


def tune_search(conn: Connection, ef_search: int) -> None:
    """How far this transaction's index scans look (hnsw.ef_search, at most 1,000)."""
    # pgvector >= 0.8 can keep scanning the index when the join filters rows out; a first
    # pass returns at most ef_search rows (1,000 at most).
    iterative = (
        ", set_config('hnsw.iterative_scan', 'relaxed_order', true)" if _pgvector_version(conn) >= (0, 8) else ""
    )
    conn.execute(text(f"SELECT set_config('hnsw.ef_search', :ef, true){iterative}"), {"ef": str(min(ef_search, 1000))})
