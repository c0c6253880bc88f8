"""`facedb bench search`: who-is-this search at scale on synthetic *clustered* embeddings.

Many faces per identity around a centre, spread like real FaceNet faces (uniform random
vectors have no near neighbours and would make recall meaningless). Loads them with COPY
into a fresh database, builds the HNSW index after the load, then measures the search part
of who-is-this against exact search done in numpy."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..config import Settings
from ..db import synthetic
from ..db.database import Database
from ..db.store import Store
from ..weights import embedder_spec

load = synthetic.load_faces
MODEL = synthetic.SYNTHETIC_MODEL
EMBEDDING_DIMENSION = int(embedder_spec(MODEL)["dimension"])


def run(
    faces: int,
    per_person: int,
    queries: int,
    ef_values: Sequence[int],
    *,
    progress: Callable[[str], None] = print,
    figures: Callable[[str], None] = print,
) -> dict:
    """The whole benchmark in a temporary embedded database: load and build, then each ef_search."""
    with tempfile.TemporaryDirectory(prefix="facedb-bench-") as home:
        database = Database.open(Settings.load(home=home, database_url=None))
        try:
            vectors, person, centres = synthetic_faces(faces // per_person, per_person)
            timings = load(database, vectors, person, say=progress)
            figures(
                f"{len(vectors)} faces of {len(centres)} people: COPY {timings['load_s']:.1f} s, HNSW build "
                f"{timings['index_build_s']:.1f} s (maintenance_work_mem {timings['maintenance_work_mem_mb']} MB), "
                f"index {timings['index_mb']:.0f} MB, table {timings['table_mb']:.0f} MB"
            )
            per_face = {
                name: round(size / len(vectors)) for name, size in synthetic.relation_sizes(database).items() if size
            }
            figures(
                f"bytes a face: {sum(per_face.values()):,} in all; "
                + ", ".join(f"{name} {size:,}" for name, size in sorted(per_face.items(), key=lambda kv: -kv[1]))
            )
            rows = []
            for ef in ef_values:
                result = measure(database, vectors, person, centres, queries=queries, ef_search=ef)
                rows.append(result)
                figures(
                    f"ef_search {ef:>4}: search p50 {result['search_p50_ms']} ms, p95 {result['search_p95_ms']} ms, "
                    f"identity recall@1 {result['identity_recall_at_1']}, face recall@10 {result['face_recall_at_10']}"
                )
        finally:
            database.close()
    return {
        "faces": faces,
        "per_person": per_person,
        **{k: round(v, 2) for k, v in timings.items()},
        "bytes_per_face": per_face,
        "runs": rows,
    }


def synthetic_faces(
    people: int, per_person: int, seed: int = 0, identity_dims: int = 24, spread: tuple[float, float] = (0.012, 0.034)
):
    """Unit vectors shaped like FaceNet faces measured on the 60 faces of the test photos:
    same-person pairs 0.63 +- 0.17 apart, different people 1.38 +- 0.10 (1st percentile 1.09).
    Identity centres lie in a random `identity_dims`-dimensional subspace (centres spread over
    all 512 dimensions would put every stranger at 1.41 +- 0.03, a uniform shell that no real
    embedding has and that defeats graph search); each face adds 512-d noise of its own size
    drawn from `spread` (poses and light differ). Returns (vectors, person, centres)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(EMBEDDING_DIMENSION, identity_dims)))
    centres = (rng.normal(size=(people, identity_dims)) @ basis.T).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.empty((people * per_person, EMBEDDING_DIMENSION), np.float32)
    for start in range(0, people, 1000):
        stop = min(people, start + 1000)
        count = (stop - start) * per_person
        noise = rng.normal(size=(count, EMBEDDING_DIMENSION)).astype(np.float32) * rng.uniform(
            *spread, size=(count, 1)
        ).astype(np.float32)
        block = np.repeat(centres[start:stop], per_person, axis=0) + noise
        vectors[start * per_person : stop * per_person] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, np.repeat(np.arange(people), per_person), centres


def probes_near(centres: np.ndarray, queries: int, seed: int = 1) -> np.ndarray:
    """New faces of known people (not stored ones)."""
    rng = np.random.default_rng(seed)
    probes = centres[rng.integers(0, len(centres), size=queries)] + rng.normal(
        scale=0.023, size=(queries, EMBEDDING_DIMENSION)
    ).astype(np.float32)
    return probes / np.linalg.norm(probes, axis=1, keepdims=True)


def exact_neighbours(vectors: np.ndarray, probes: np.ndarray, k: int, block: int = 100_000) -> np.ndarray:
    """The k nearest vectors of each probe by brute force, in blocks (|a-b|^2 = |a|^2 + |b|^2 - 2ab)."""
    best_d = np.full((len(probes), 0), np.inf, np.float32)
    best_i = np.zeros((len(probes), 0), np.int64)
    for start in range(0, len(vectors), block):
        part = vectors[start : start + block]
        d = (part * part).sum(axis=1)[None, :] - 2 * probes @ part.T
        top = np.argpartition(d, min(k, d.shape[1] - 1), axis=1)[:, :k]
        best_d = np.concatenate([best_d, np.take_along_axis(d, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(best_d, axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(best_d, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return best_i


def measure(
    database: Database,
    vectors: np.ndarray,
    person: np.ndarray,
    centres: np.ndarray,
    queries: int = 200,
    ef_search: int = 100,
    seed: int = 1,
) -> dict:
    """Latency of the identity search and its recall against exact search."""
    store = Store(database)
    probes = probes_near(centres, queries, seed)
    face_ids = np.array(synthetic.face_ids_in_load_order(database))
    identity_of = synthetic.identity_names(database)
    exact = exact_neighbours(vectors, probes, 10)
    latencies, identity_hits, face_recall = [], 0, []
    for probe, exact_faces in zip(probes, exact):
        exact_person = person[exact_faces[0]]
        started = time.perf_counter()
        candidates = store.nearest_identities(probe, 3, MODEL, ef_search=ef_search)
        latencies.append(time.perf_counter() - started)
        if candidates and identity_of[candidates[0].identity_id] == f"person {exact_person}":
            identity_hits += 1
        found = store.nearest_faces(probe, 10, MODEL, ef_search=ef_search)
        face_recall.append(len(set(found) & set(face_ids[exact_faces].tolist())) / 10)
    ordered = sorted(latencies)
    return {
        "queries": queries,
        "ef_search": ef_search,
        "search_p50_ms": round(statistics.median(ordered) * 1000, 2),
        "search_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        "identity_recall_at_1": round(identity_hits / queries, 4),
        "face_recall_at_10": round(float(np.mean(face_recall)), 4),
    }
