"""`facedb bench search`: who-is-this search at scale on synthetic *clustered* embeddings.

Many faces per identity around a centre, spread like real FaceNet faces (uniform random
vectors have no near neighbours and would make recall meaningless). Made chunk by chunk (ten
million faces are 20 GB as float32) and loaded with COPY into a fresh database; the exact
neighbours of the probes are found in numpy during the same pass. Then, for each kind of
search index: its build, its bytes a face, the server's memory, and who-search latency at one
and at several clients with recall against exact search."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import psutil

from ..config import Settings
from ..db import search_index, synthetic
from ..db.database import Database
from ..db.people import PeopleStore
from ..db.sql import embedding_index
from ..db.store import Store
from ..people.clustering import ClusterParams
from ..people.plan import plan_new_faces
from ..vision.weights import embedder_spec

MODEL = synthetic.SYNTHETIC_MODEL
EMBEDDING_DIMENSION = int(embedder_spec(MODEL)["dimension"])

# FaceNet (20180402) on the 60 faces of the test photos: same-person pairs 0.63 +- 0.17 apart,
# different people 1.38 +- 0.10 (1st percentile 1.09). The synthetic faces are made to match.
REAL_SPREAD = {"same_mean": 0.63, "same_std": 0.17, "other_mean": 1.38, "other_std": 0.10, "other_p1": 1.09}


class SyntheticFaces:
    """Unit vectors shaped like FaceNet faces (REAL_SPREAD). Identity centres lie in a random
    `identity_dims`-dimensional subspace (centres spread over all 512 dimensions would put every
    stranger at 1.41 +- 0.03, a uniform shell that no real embedding has and that defeats graph
    search); each face adds 512-d noise of its own size drawn from `spread` (poses and light
    differ). Faces come person by person, `per_person` each, in chunks that do not depend on
    the chunk size asked for."""

    PEOPLE_PER_BLOCK = 1000

    def __init__(
        self,
        people: int,
        per_person: int,
        seed: int = 0,
        identity_dims: int = 24,
        spread: tuple[float, float] = (0.012, 0.034),
    ) -> None:
        self.people, self.per_person, self.seed, self.spread = people, per_person, seed, spread
        rng = np.random.default_rng(seed)
        self.basis = np.linalg.qr(rng.normal(size=(EMBEDDING_DIMENSION, identity_dims)))[0].astype(np.float32)
        # centres in the subspace's coordinates: a million people are 96 MB, not 2 GB
        centres = rng.normal(size=(people, identity_dims)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    @property
    def faces(self) -> int:
        return self.people * self.per_person

    def person_of(self, face_index: np.ndarray) -> np.ndarray:
        return face_index // self.per_person

    def block(self, number: int) -> np.ndarray:
        """The faces of people number*PEOPLE_PER_BLOCK.. (their own random stream)."""
        rng = np.random.default_rng([self.seed, number])
        start = number * self.PEOPLE_PER_BLOCK
        centres = self.centres[start : min(self.people, start + self.PEOPLE_PER_BLOCK)] @ self.basis.T
        count = len(centres) * self.per_person
        noise = rng.normal(size=(count, EMBEDDING_DIMENSION)).astype(np.float32)
        noise *= rng.uniform(*self.spread, size=(count, 1)).astype(np.float32)
        faces = np.repeat(centres, self.per_person, axis=0) + noise
        return faces / np.linalg.norm(faces, axis=1, keepdims=True)

    def blocks(self) -> Iterator[np.ndarray]:
        for number in range(-(-self.people // self.PEOPLE_PER_BLOCK)):
            yield self.block(number)

    def all(self) -> np.ndarray:
        return np.concatenate(list(self.blocks()))

    def probes(self, queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """New faces of known people (not stored ones), and who they are."""
        rng = np.random.default_rng(seed)
        who = rng.integers(0, self.people, size=queries)
        probes = self.centres[who] @ self.basis.T
        probes += rng.normal(scale=0.023, size=(queries, EMBEDDING_DIMENSION)).astype(np.float32)
        return probes / np.linalg.norm(probes, axis=1, keepdims=True), who

    def spread_measured(self, people: int = 200) -> dict[str, float]:
        """REAL_SPREAD's figures on the first `people` of these faces."""
        vectors = self.block(0)[: people * self.per_person]
        person = self.person_of(np.arange(len(vectors)))
        pairs = np.triu_indices(len(vectors), 1)
        distances = np.sqrt(np.maximum(0, 2 - 2 * (vectors @ vectors.T)))[pairs]
        same = (person[:, None] == person[None])[pairs]
        genuine, impostor = distances[same], distances[~same]
        return {
            "same_mean": round(float(genuine.mean()), 3),
            "same_std": round(float(genuine.std()), 3),
            "other_mean": round(float(impostor.mean()), 3),
            "other_std": round(float(impostor.std()), 3),
            "other_p1": round(float(np.percentile(impostor, 1)), 3),
        }


class ExactNeighbours:
    """The k nearest faces of each probe by brute force, over faces seen block by block
    (|a-b|^2 = |a|^2 + |b|^2 - 2ab)."""

    def __init__(self, probes: np.ndarray, k: int) -> None:
        self.probes, self.k, self.seen = probes, k, 0
        self.distances = np.full((len(probes), 0), np.inf, np.float32)
        self.ids = np.zeros((len(probes), 0), np.int64)

    def add(self, vectors: np.ndarray) -> None:
        d = (vectors * vectors).sum(axis=1)[None, :] - 2 * self.probes @ vectors.T
        top = np.argpartition(d, min(self.k, d.shape[1] - 1), axis=1)[:, : self.k]
        distances = np.concatenate([self.distances, np.take_along_axis(d, top, axis=1)], axis=1)
        ids = np.concatenate([self.ids, top + self.seen], axis=1)
        keep = np.argsort(distances, axis=1)[:, : self.k]
        self.distances, self.ids = np.take_along_axis(distances, keep, axis=1), np.take_along_axis(ids, keep, axis=1)
        self.seen += len(vectors)


def exact_neighbours(vectors: np.ndarray, probes: np.ndarray, k: int, block: int = 100_000) -> np.ndarray:
    exact = ExactNeighbours(probes, k)
    for start in range(0, len(vectors), block):
        exact.add(vectors[start : start + block])
    return exact.ids


def run(
    faces: int,
    per_person: int,
    queries: int,
    ef_values: Sequence[int],
    kinds: Sequence[str] = ("halfvec", "binary"),
    clients: Sequence[int] = (1, 4),
    *,
    progress: Callable[[str], None] = print,
    figures: Callable[[str], None] = print,
    home: Path | None = None,
) -> dict:
    """The whole benchmark in a temporary embedded database (under `home` if given): load once,
    then for each index kind build it and measure each ef_search at each number of clients."""
    with tempfile.TemporaryDirectory(prefix="facedb-bench-", dir=home) as folder:
        database = Database.open(Settings.load(home=folder, database_url=None))
        try:
            archive = SyntheticFaces(faces // per_person, per_person)
            spread = archive.spread_measured()
            figures(
                "synthetic spread: same person {same_mean} +- {same_std}, other people {other_mean} +- {other_std} "
                "(1st percentile {other_p1})".format(**spread)
                + "; FaceNet on the test photos: {same_mean} +- {same_std}, {other_mean} +- {other_std} ({other_p1})".format(
                    **REAL_SPREAD
                )
            )
            probes, _ = archive.probes(queries)
            exact = ExactNeighbours(probes, 10)

            def blocks() -> Iterator[np.ndarray]:
                for block in archive.blocks():
                    exact.add(block)
                    yield block

            loaded = synthetic.load_faces(database, blocks(), archive.faces, archive.people, say=progress)
            figures(
                f"{archive.faces:,} faces of {archive.people:,} people: COPY {loaded['load_s']:.1f} s "
                f"({archive.faces / loaded['load_s']:,.0f} faces/s)"
            )
            report: dict = {
                "faces": archive.faces,
                "per_person": per_person,
                "spread": spread,
                "load_s": loaded["load_s"],
            }
            report["listings"] = listings = measure_listings(database, progress)
            figures(
                f"people: summarising all {archive.people:,} {listings['summarise_all_s']} s (once; then only those "
                f"whose faces change), a page of 100 {listings['people_page_ms']} ms, counted "
                f"{listings['count_people_ms']} ms; faces of nobody, a page {listings['unassigned_page_ms']} ms; "
                f"status {listings['status_ms']} ms"
            )
            report["indexes"] = []
            for kind in kinds:
                build_s = search_index.build(database.engine, MODEL, EMBEDDING_DIMENSION, kind, archive.faces, progress)
                per_face = {
                    name: round(size / archive.faces)
                    for name, size in synthetic.relation_sizes(database).items()
                    if size
                }
                index_bytes = per_face.get(embedding_index(MODEL), 0) * archive.faces
                figures(
                    f"{kind} index: build {build_s:.1f} s, {index_bytes / 2**20:,.0f} MB; bytes a face: "
                    f"{sum(per_face.values()):,} in all; "
                    + ", ".join(
                        f"{name} {size:,}" for name, size in sorted(per_face.items(), key=lambda kv: -kv[1])[:6]
                    )
                )
                runs = []
                for ef in ef_values:
                    for n in clients:
                        result = measure(
                            database, archive, probes, exact.ids, loaded["first_identity"], ef_search=ef, clients=n
                        )
                        runs.append(result)
                        figures(
                            f"{kind} ef_search {ef:>4}, {n} client{'s' if n > 1 else ''}: who p50 {result['p50_ms']} ms, "
                            f"p99 {result['p99_ms']} ms, {result['per_second']} a second; identity recall@1 "
                            f"{result['identity_recall_at_1']}, face recall@10 {result['face_recall_at_10']}; "
                            f"server memory {result['server_memory_mb']:,} MB"
                        )
                report["indexes"].append(
                    {"kind": kind, "build_s": round(build_s, 1), "bytes_per_face": per_face, "runs": runs}
                )
            if kinds:
                report["new_faces"] = new = measure_new_faces(
                    database, archive, loaded["first_identity"], min(10_000, archive.faces // 100), progress
                )
                figures(
                    f"cluster --incremental, {new['faces']:,} new faces (one each of as many people) into "
                    f"{archive.faces:,} through the {kinds[-1]} index: neighbours {new['neighbours_s']} s, "
                    f"plan {new['plan_s']} s ({new['per_100k_s']:,.0f} s for 100,000); back to their own person "
                    f"{new['own_person']:.4f}, to another {new['other_person']:.4f}"
                )
        finally:
            database.close()
    return report


def measure_new_faces(
    database: Database, archive: SyntheticFaces, first_identity: int, new: int, progress: Callable[[str], None]
) -> dict:
    """`cluster --incremental` at this size: `new` faces spread over as many people lose their
    person and come back as faces of nobody; how long the index lookups and the plan take, and
    how many go back to their own person (proposed: the synthetic people are enrolled)."""
    people = PeopleStore(Store(database), MODEL)
    step = archive.faces // new
    synthetic.unassign_every(database, step)
    faces = people.new_faces_of_nobody(after_face=0)
    started = time.perf_counter()
    edges = people.neighbours_through_index(faces, 16, 0.9, EMBEDDING_DIMENSION, progress, chunk=500)
    neighbours_s = time.perf_counter() - started
    started = time.perf_counter()
    plan = plan_new_faces(people.new_faces_inputs(faces, edges), ClusterParams())
    plan_s = time.perf_counter() - started
    own = sum(
        1
        for face, person, _ in plan.assignments
        if not isinstance(person, str) and person - first_identity == (face - 1) // archive.per_person
    )
    other = sum(1 for _, person, _ in plan.assignments if not isinstance(person, str)) - own
    return {
        "faces": len(faces),
        "neighbours_s": round(neighbours_s, 1),
        "plan_s": round(plan_s, 1),
        "per_100k_s": round((neighbours_s + plan_s) * 100_000 / max(1, len(faces)), 0),
        "own_person": round(own / max(1, len(faces)), 4),
        "other_person": round(other / max(1, len(faces)), 4),
    }


def measure_listings(database: Database, progress: Callable[[str], None]) -> dict:
    """What the people lists and status cost at this size: the first summaries of everyone
    (after a bulk load), then the median of 5 of each listing."""
    people = PeopleStore(Store(database), MODEL)
    started = time.perf_counter()
    people.summaries.summarise_changed(say=progress)
    summarise_s = time.perf_counter() - started

    def median_ms(work: Callable[[], object]) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return round(statistics.median(times) * 1000, 1)

    return {
        "summarise_all_s": round(summarise_s, 1),
        "people_page_ms": median_ms(lambda: people.summaries.people(limit=100)),
        "count_people_ms": median_ms(people.summaries.count_people),
        "unassigned_page_ms": median_ms(lambda: people.faces(unassigned=True, limit=100)),
        "status_ms": median_ms(Store(database).counts),
    }


def measure(
    database: Database,
    archive: SyntheticFaces,
    probes: np.ndarray,
    exact_ids: np.ndarray,
    first_identity: int,
    ef_search: int = 100,
    clients: int = 1,
) -> dict:
    """Who-search latency (the identity search of every probe, `clients` at a time) and its
    recall against exact search: identity recall@1 (the nearest identity is the exact nearest
    face's person) and face recall@10."""
    store = Store(database)
    latencies: list[float] = [0.0] * len(probes)
    identity_hits = [False] * len(probes)
    face_recall = [0.0] * len(probes)

    def work(mine: range) -> None:
        for q in mine:
            started = time.perf_counter()
            candidates = store.nearest.identities(probes[q], 3, MODEL, ef_search=ef_search)
            latencies[q] = time.perf_counter() - started
            exact_person = int(archive.person_of(exact_ids[q, 0]))
            identity_hits[q] = bool(candidates) and candidates[0].identity_id - first_identity == exact_person

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(range(c, len(probes), clients),)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for q, probe in enumerate(probes):
        found = store.nearest.faces(probe, 10, MODEL, ef_search=ef_search)
        face_recall[q] = len({f - 1 for f in found} & set(exact_ids[q].tolist())) / 10
    ordered = sorted(latencies)
    return {
        "queries": len(probes),
        "ef_search": ef_search,
        "clients": clients,
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
        "per_second": round(len(probes) / elapsed, 1),
        "identity_recall_at_1": round(sum(identity_hits) / len(probes), 4),
        "face_recall_at_10": round(float(np.mean(face_recall)), 4),
        "server_memory_mb": server_memory_mb(database),
    }


def server_memory_mb(database: Database) -> int:
    """The (local) PostgreSQL server's processes' proportional set size: shared memory counted once."""
    try:
        server = psutil.Process(synthetic.backend_pid(database)).parent()
        if server is None:
            return 0
        processes = [server, *server.children(recursive=True)]
        return round(sum(p.memory_full_info().pss for p in processes) / 2**20)
    except (OSError, psutil.Error):
        return 0
