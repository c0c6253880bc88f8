"""`facedb calibrate`: a threshold from the user's own people, for a chosen false-accept rate.

Genuine pairs are two faces a person placed in the same named identity; impostor pairs are
faces of two different named identities, and a placed face against a face of nobody (an archive
is mostly strangers). Pairs of faces from photos with the same bytes are left out, and so are
pairs closer than dedup's same-shot distance where one face belongs to nobody: that is the same
shot of a placed face, not a stranger.
"""

from __future__ import annotations

import numpy as np

from . import evaluation
from .db.store import FaceSample
from .dedup import DedupThresholds

MAX_PAIRS = 1_000_000  # per kind of pair; sampled (seeded) beyond that
SAME_SHOT = DedupThresholds().same_face_distance


def genuine_distances(placed: FaceSample, rng: np.random.Generator) -> np.ndarray:
    """Every pair within each identity (a seeded sample beyond MAX_PAIRS)."""
    pairs = []
    for identity in np.unique(placed.identity_ids):
        members = np.flatnonzero(placed.identity_ids == identity)
        i, j = np.triu_indices(len(members), 1)
        pairs.append(np.stack([members[i], members[j]], axis=1))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    if len(pairs) > MAX_PAIRS:
        pairs = pairs[rng.choice(len(pairs), MAX_PAIRS, replace=False)]
    photo = _photo_codes(placed)
    pairs = pairs[photo[pairs[:, 0]] != photo[pairs[:, 1]]]
    return _distances(placed.vectors, pairs[:, 0], placed.vectors, pairs[:, 1])


def across_identities(placed: FaceSample, rng: np.random.Generator) -> np.ndarray:
    """Pairs of placed faces of different identities: all of them, or a seeded sample."""
    n = len(placed.face_ids)
    same = placed.identity_ids[:, None] == placed.identity_ids[None, :] if n <= 3000 else None
    if same is not None:
        i, j = np.triu_indices(n, 1)
        keep = ~same[i, j]
        i, j = i[keep], j[keep]
        if len(i) > MAX_PAIRS:
            chosen = rng.choice(len(i), MAX_PAIRS, replace=False)
            i, j = i[chosen], j[chosen]
    else:
        i, j = rng.integers(0, n, MAX_PAIRS), rng.integers(0, n, MAX_PAIRS)
        keep = placed.identity_ids[i] != placed.identity_ids[j]
        i, j = i[keep], j[keep]
    return _distances(placed.vectors, i, placed.vectors, j)


def against_nobody(placed: FaceSample, nobody: FaceSample, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Placed faces against faces of nobody; returns the distances and how many pairs were the
    same shot (left out)."""
    n, m = len(placed.face_ids), len(nobody.face_ids)
    if n == 0 or m == 0:
        return np.zeros(0), 0
    if n * m <= MAX_PAIRS:
        i, j = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(m), indexing="ij"))
    else:
        i, j = rng.integers(0, n, MAX_PAIRS), rng.integers(0, m, MAX_PAIRS)
    distances = _distances(placed.vectors, i, nobody.vectors, j)
    same_shot = distances <= SAME_SHOT
    return distances[~same_shot], int(same_shot.sum())


def _photo_codes(faces: FaceSample) -> np.ndarray:
    """One number per photo content (the same bytes, the same number); unknown bytes get their own."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(h, len(codes)) if h is not None else -1 - k
                     for k, h in enumerate(faces.content_hashes)], np.int64)


def _distances(left: np.ndarray, i: np.ndarray, right: np.ndarray, j: np.ndarray, block: int = 65536) -> np.ndarray:
    out = np.empty(len(i), np.float64)
    for start in range(0, len(i), block):
        stop = start + block
        out[start:stop] = np.linalg.norm(left[i[start:stop]] - right[j[start:stop]], axis=1)
    return out


def calibrate(placed: FaceSample, nobody: FaceSample, far: float, seed: int = 0) -> dict:
    """The largest threshold whose false-accept rate over the impostor pairs is at most `far`,
    the miss rate it costs over the genuine pairs, and what it rests on."""
    rng = np.random.default_rng(seed)
    genuine = genuine_distances(placed, rng)
    across = across_identities(placed, rng)
    strangers, same_shot = against_nobody(placed, nobody, rng)
    impostor = np.concatenate([across, strangers])
    evidence = {"identities": int(len(np.unique(placed.identity_ids))), "placed_faces": int(len(placed.face_ids)),
                "faces_of_nobody": int(len(nobody.face_ids)), "impostor_pairs_across_identities": int(len(across)),
                "impostor_pairs_against_nobody": int(len(strangers)), "same_shot_pairs_left_out": same_shot}
    if len(genuine) == 0 or len(impostor) == 0:
        return {"threshold": None, "far_target": far, "far_observed": None, "miss_rate": None, "miss_rate_ci": None,
                "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor)), "enough": False,
                "needed": evaluation.pairs_needed(far)} | evidence
    result = evaluation.threshold_for_far(genuine, impostor, far)
    return result | evidence
