"""`facedb calibrate`: a threshold from the user's own people, for a chosen false-accept rate.

Genuine pairs are two faces a person placed (enrolled, confirmed) in the same named identity.
Impostor pairs are placed faces of two different named identities, and faces a person rejected
from someone (`facedb reject`) against that someone's placed faces. Faces of nobody (not
assigned, or clustered into an unnamed person) count as strangers only when asked: in an
archive many of them are the enrolled people themselves, not yet named, and every such pair
would count as a false accept and drag the threshold down. Pairs of faces from photos with the
same bytes are left out, and so are pairs closer than dedup's same-shot distance against a face
of nobody (the same shot of a placed face).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import evaluation
from .dedup import DedupThresholds


@dataclass
class FaceSample:
    """Faces for calibration: ids, their identity (-1: none), their photo's bytes, vectors."""

    face_ids: np.ndarray
    identity_ids: np.ndarray
    content_hashes: list[str | None]
    vectors: np.ndarray


MAX_PAIRS = 1_000_000  # per kind of pair; a seeded sample beyond that
SAME_SHOT = DedupThresholds().same_face_distance


def genuine_distances(placed: FaceSample, rng: np.random.Generator) -> np.ndarray:
    """Every pair within each identity, or a seeded sample of them beyond MAX_PAIRS."""
    groups = [np.flatnonzero(placed.identity_ids == identity) for identity in np.unique(placed.identity_ids)]
    counts = np.array([len(g) * (len(g) - 1) // 2 for g in groups], np.int64)
    if counts.sum() <= MAX_PAIRS:
        within = [np.stack([g[i], g[j]], axis=1) for g in groups for i, j in [np.triu_indices(len(g), 1)]]
        pairs = np.concatenate(within) if within else np.zeros((0, 2), np.int64)
    else:  # sample identities by their share of pairs, then two different members of each
        chosen = rng.choice(len(groups), MAX_PAIRS, p=counts / counts.sum())
        sizes = np.array([len(groups[k]) for k in chosen])
        first = rng.integers(0, sizes)
        second = (first + rng.integers(1, sizes)) % sizes
        pairs = np.stack(
            [[groups[k][a] for k, a in zip(chosen, first)], [groups[k][b] for k, b in zip(chosen, second)]], axis=1
        )
    photo = _photo_codes(placed)
    pairs = pairs[photo[pairs[:, 0]] != photo[pairs[:, 1]]]
    return evaluation.pair_distances(placed.vectors, pairs[:, 0], placed.vectors, pairs[:, 1])


def across_identities(placed: FaceSample, rng: np.random.Generator) -> np.ndarray:
    """Pairs of placed faces of different identities: all of them, or a seeded sample."""
    n = len(placed.face_ids)
    if n * (n - 1) // 2 <= MAX_PAIRS:
        i, j = np.triu_indices(n, 1)
    else:
        i, j = rng.integers(0, n, MAX_PAIRS), rng.integers(0, n, MAX_PAIRS)
    keep = placed.identity_ids[i] != placed.identity_ids[j]
    return evaluation.pair_distances(placed.vectors, i[keep], placed.vectors, j[keep])


def against_rejected(placed: FaceSample, rejected: FaceSample) -> np.ndarray:
    """Each rejected face against the placed faces of the person it is not."""
    rows = [
        (r, p)
        for r, identity in enumerate(rejected.identity_ids)
        for p in np.flatnonzero(placed.identity_ids == identity)
    ][:MAX_PAIRS]
    if not rows:
        return np.zeros(0)
    r, p = np.array(rows).T
    return evaluation.pair_distances(rejected.vectors, r, placed.vectors, p)


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
    distances = evaluation.pair_distances(placed.vectors, i, nobody.vectors, j)
    same_shot = distances <= SAME_SHOT
    return distances[~same_shot], int(same_shot.sum())


def _photo_codes(faces: FaceSample) -> np.ndarray:
    """One number per photo content (the same bytes, the same number); unknown bytes get their own."""
    codes: dict[str, int] = {}
    return np.array(
        [codes.setdefault(h, len(codes)) if h is not None else -1 - k for k, h in enumerate(faces.content_hashes)],
        np.int64,
    )


def calibrate(placed: FaceSample, rejected: FaceSample, nobody: FaceSample | None, far: float, seed: int = 0) -> dict:
    """The largest threshold whose false-accept rate over the impostor pairs is at most `far`,
    the miss rate it costs over the genuine pairs, and what it rests on. `nobody`: faces of no
    named identity to count as strangers too (None: not counted)."""
    rng = np.random.default_rng(seed)
    genuine = genuine_distances(placed, rng)
    across = across_identities(placed, rng)
    refused = against_rejected(placed, rejected)
    strangers, same_shot = against_nobody(placed, nobody, rng) if nobody is not None else (np.zeros(0), 0)
    impostor = np.concatenate([across, refused, strangers])
    evidence = {
        "identities": int(len(np.unique(placed.identity_ids))),
        "placed_faces": int(len(placed.face_ids)),
        "impostor_pairs_across_identities": int(len(across)),
        "impostor_pairs_against_rejected": int(len(refused)),
        "faces_of_nobody": None if nobody is None else int(len(nobody.face_ids)),
        "impostor_pairs_against_nobody": int(len(strangers)),
        "same_shot_pairs_left_out": same_shot,
    }
    if len(genuine) == 0 or len(impostor) == 0:
        return {
            "threshold": None,
            "far_target": far,
            "far_observed": None,
            "miss_rate": None,
            "miss_rate_ci": None,
            "genuine_pairs": int(len(genuine)),
            "impostor_pairs": int(len(impostor)),
            "enough": False,
            "needed": evaluation.pairs_needed(far),
        } | evidence
    return evaluation.threshold_for_far(genuine, impostor, far) | evidence
