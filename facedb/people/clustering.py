"""Grouping faces into people: density-based, constrained, deterministic, bounded in memory.

Pure functions over numpy arrays, so the algorithm can be tested and timed without a database.

How it works (DBSCAN with constraints):
1. the exact neighbours of every face within `eps` (at most k), computed block by block
   (memory grows with block x faces, never faces x faces);
2. a face with at least `min_samples` faces within `eps` (itself included) is a *core* face;
3. edges between core faces within `eps` are merged shortest first (ties broken by face id),
   but a merge is refused when it would put two faces of one photo together, join two
   different people that a person set (enrolled / confirmed faces), or add a face to
   someone it was rejected from;
4. border faces join the group of their nearest core face, under the same rules.
Because the result depends only on the faces and their distances, it does not depend on
the order in which photos were indexed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import DEFAULT_CLUSTER_MIN_SAMPLES, DEFAULT_CLUSTER_MIN_SIZE, Settings
from ..vision.weights import model_distances

NO_IDENTITY = -1
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class ClusterParams:
    # Made without a model, the default model's distances (from_settings takes a model's)
    eps: float = field(default_factory=lambda: model_distances().cluster_eps)  # neighbouring faces of one person
    min_samples: int = DEFAULT_CLUSTER_MIN_SAMPLES  # faces within eps (itself included) to be a core face
    min_size: int = DEFAULT_CLUSTER_MIN_SIZE  # smallest group that becomes a new person
    k: int = 16  # neighbours looked at per face
    # a lone face this close to a person's face is proposed
    propose_threshold: float = field(default_factory=lambda: model_distances().propose_threshold)
    # one shot of a face in copies of one picture (dedup's same face)
    same_face_distance: float = field(default_factory=lambda: model_distances().same_face_distance)

    @classmethod
    def from_settings(
        cls, settings: Settings, model: str | None = None, calibrated_who_threshold: float | None = None
    ) -> ClusterParams:
        """The settings' values where set, else `model`'s (its manifest entry); proposals as
        much stricter than a calibrated who threshold as the model's are than its default."""
        own = model_distances(model)
        propose = settings.propose_threshold
        if propose is None:
            propose = (
                own.propose_threshold
                if calibrated_who_threshold is None
                else calibrated_who_threshold - (own.threshold - own.propose_threshold)
            )
        return cls(
            eps=own.cluster_eps if settings.cluster_eps is None else settings.cluster_eps,
            min_samples=settings.cluster_min_samples,
            min_size=settings.cluster_min_size,
            propose_threshold=propose,
            same_face_distance=own.same_face_distance,
        )


@dataclass
class FaceSet:
    """The faces to cluster. `identity` holds the person a human put the face in, or -1."""

    face_ids: np.ndarray  # int64 [N]
    photo_ids: np.ndarray  # int64 [N]
    vectors: np.ndarray  # float32 [N, D], unit length
    identity: np.ndarray  # int64 [N]
    rejected: dict[int, set[int]] = field(default_factory=dict)  # row -> identities it is not

    def __len__(self) -> int:
        return len(self.face_ids)


def nearest_neighbours(
    vectors: np.ndarray, k: int, radius: float, block: int = 512, say: Callable[[str], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours within `radius` (at most k, nearest first, not the face itself).

    Returns (indices [N, k], distances [N, k]); rows with fewer neighbours are padded with
    index -1 and distance inf. Memory grows with block x N, never N x N. `say` hears how far
    it is every few seconds (the time grows with N squared)."""
    n = len(vectors)
    indices = np.full((n, k), -1, np.int64)
    distances = np.full((n, k), np.inf, np.float32)
    if n < 2 or k < 1:
        return indices, distances
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    squared = np.einsum("ij,ij->i", vectors, vectors)
    # For unit vectors (FaceNet's are) distance <= radius is dot product >= 1 - radius^2 / 2:
    # one comparison per pair instead of a full distance.
    unit = bool(np.allclose(squared, 1.0, atol=1e-3))
    started = told = time.monotonic()
    for start in range(0, n, block):
        stop = min(n, start + block)
        products = vectors[start:stop] @ vectors.T
        if unit:
            near = products >= 1.0 - radius * radius / 2.0 - 1e-4
        else:
            near = squared[start:stop, None] + squared[None, :] - 2.0 * products <= radius * radius + 1e-4
        near[np.arange(stop - start), np.arange(start, stop)] = False  # not your own neighbour
        rows, cols = np.nonzero(near)
        d = np.sqrt(np.maximum(squared[start + rows] + squared[cols] - 2.0 * products[rows, cols], 0.0))
        keep = d <= radius
        rows, cols, d = rows[keep], cols[keep], d[keep]
        # nearest first; ties broken by index, the same way every time
        order = np.lexsort((cols, d, rows))
        rows, cols, d = rows[order], cols[order], d[order]
        first = np.searchsorted(rows, rows, side="left")
        rank = np.arange(len(rows)) - first
        keep = rank < k
        indices[start + rows[keep], rank[keep]] = cols[keep]
        distances[start + rows[keep], rank[keep]] = d[keep]
        if say is not None and time.monotonic() - told >= PROGRESS_EVERY_S:
            told = time.monotonic()
            rate = stop / (told - started)
            say(f"neighbours of {stop:,}/{n:,} faces, {rate:,.0f} a second, {(n - stop) / rate:,.0f} s to go")
    return indices, distances


class ConstrainedGroups:
    """Union-find whose groups remember their photos, their person and whom they were rejected by."""

    def __init__(self, faces: FaceSet) -> None:
        n = len(faces)
        self.parent = np.arange(n)
        self.photos: list[set[int]] = [{int(p)} for p in faces.photo_ids]
        self.identity: list[int] = [int(i) for i in faces.identity]
        self.rejected: list[set[int]] = [set(faces.rejected.get(i, ())) for i in range(n)]

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def can_merge(self, a: int, b: int) -> bool:
        if self.photos[a] & self.photos[b]:
            return False
        ia, ib = self.identity[a], self.identity[b]
        if ia != NO_IDENTITY and ib != NO_IDENTITY and ia != ib:
            return False
        return not ((ib != NO_IDENTITY and ib in self.rejected[a]) or (ia != NO_IDENTITY and ia in self.rejected[b]))

    def merge(self, a: int, b: int) -> bool:
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        if not self.can_merge(a, b):
            return False
        if a > b:  # the smaller row is the root: deterministic
            a, b = b, a
        self.parent[b] = a
        self.photos[a] |= self.photos[b]
        self.rejected[a] |= self.rejected[b]
        if self.identity[a] == NO_IDENTITY:
            self.identity[a] = self.identity[b]
        self.photos[b], self.rejected[b] = set(), set()
        return True


def cluster(
    faces: FaceSet, params: ClusterParams = ClusterParams(), neighbours: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Group label per face (the smallest row of its group), or -1 for a face in no group."""
    n = len(faces)
    if n == 0:
        return np.zeros(0, np.int64)
    indices, distances = (
        neighbours if neighbours is not None else nearest_neighbours(faces.vectors, params.k, params.eps)
    )
    within = distances <= params.eps
    core = within.sum(axis=1) + 1 >= params.min_samples
    groups = ConstrainedGroups(faces)

    rows, cols = np.nonzero(within)
    a, b, d = rows, indices[rows, cols], distances[rows, cols]
    keep = core[a] & core[b]  # an edge found from both ends is merged twice: harmless
    a, b, d = np.minimum(a, b)[keep], np.maximum(a, b)[keep], d[keep]
    # face ids, not rows, break ties, so the order rows were loaded in does not matter
    order = np.lexsort((faces.face_ids[b], faces.face_ids[a], d))
    for i in order:
        groups.merge(int(a[i]), int(b[i]))

    # Border faces: the nearest core face within eps whose group accepts them.
    border = [i for i in range(n) if not core[i]]
    border.sort(key=lambda i: (float(distances[i, 0]), int(faces.face_ids[i])))
    for i in border:
        for j, dist in zip(indices[i], distances[i]):
            if dist > params.eps:
                break
            if core[j] and groups.merge(int(j), i):
                break

    labels = np.array([groups.find(i) for i in range(n)], np.int64)
    sizes = np.bincount(labels, minlength=n)
    labels[sizes[labels] == 1] = -1
    return labels


def distances_to(queries: np.ndarray, targets: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: the index of its nearest target and the distance, in blocks."""
    nearest = np.full(len(queries), -1, np.int64)
    distance = np.full(len(queries), np.inf, np.float32)
    if len(targets) == 0:
        return nearest, distance
    target_sq = np.einsum("ij,ij->i", targets, targets)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + target_sq[None, :] - 2.0 * (q @ targets.T)
        nearest[start : start + block] = np.argmin(d2, axis=1)
        distance[start : start + block] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return nearest, distance
