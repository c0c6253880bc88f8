"""`facedb calibrate`: a who-is-this threshold for 1:N searches, from the archive's own people.

A stranger asked of `who` is compared with every enrolled face, and is named when the nearest
face of *anyone* lies within the threshold. So what a threshold costs is the false positive
identification rate (FPIR): the share of searches by people who are not there that name
somebody. A pair false-accept rate underestimates it by about the number of people enrolled.

The FPIR is estimated leave-one-identity-out. Each face a person placed (enrolled, confirmed)
in a named identity is asked against the placed faces of every *other* named person: to them it
is a stranger. Faces a person rejected from someone are asked against that someone. When asked
(`with_unlabelled`), faces of nobody (unnamed clusters and unassigned faces) are asked against
everyone. The same searches give the people's side: a placed face is found when the nearest
face of its own person (from another photo) is within the threshold and nearer than anyone
else's.

Thin evidence never loosens. A few clearly different people are far apart from each other,
but strangers are not: 5 people enrolled say nothing about the look-alikes of the world. Unless
there are MIN_IDENTITIES people (named, plus unnamed clusters used as strangers), enough
searches to see the asked rate at all, and same-person searches to price it, the model's
default stays, or is tightened when the searches name someone at it more often than asked.
With evidence enough, the threshold is the largest at which the upper end of the FPIR's 95%
interval stays within the asked rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..dedup.tiers import DedupThresholds
from ..records import FaceSample
from .evaluation import wilson_interval

METHOD = "open-set identification"
MIN_IDENTITIES = 20  # people in the evidence before the default may be loosened
MIN_GENUINE = 20  # same-person searches before a threshold's price (recall) means anything
# A calibrated threshold stays this far below the first search it must not let through, so that
# the same distance measured again in float32 (pgvector) cannot slip under it.
CALIBRATION_MARGIN = 1e-6
_BLOCK = 512  # probes per distance block: 512 x 100,000 float32 is 200 MB
MAX_PROBES = 10_000  # of each kind: 2.6 times the 3,838 searches a rate of 0.001 needs

PLACED, REJECTED, NOBODY = "placed", "rejected", "nobody"


@dataclass
class Searches:
    """What each probe face's search finds. For every probe: the nearest face of someone it is
    not (its distance, that face and its identity). For placed probes whose person has a face
    in another photo: the nearest face of their own person."""

    face_ids: np.ndarray
    kinds: np.ndarray  # PLACED, REJECTED or NOBODY
    impostor: np.ndarray  # distance to the nearest face of someone else (inf: nobody to compare with)
    impostor_face_ids: np.ndarray
    impostor_identity_ids: np.ndarray
    own: np.ndarray  # per placed probe (in the order of placed): the nearest own face, inf when none
    other_of_placed: np.ndarray  # per placed probe: its nearest face of anyone else
    same_shot_left_out: int  # faces of nobody within the same-shot distance of a placed face


class PhotoCodes:
    """One number per photo content across every sample: the same bytes, the same number (a
    probe is never matched with a face of its own photo, or of a copy of it); a face whose
    bytes are unknown gets a number of its own."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._unknown = 0

    def of(self, hashes: list[str | None]) -> np.ndarray:
        out = np.empty(len(hashes), np.int64)
        for k, h in enumerate(hashes):
            if h is None:
                self._unknown -= 1
                out[k] = self._unknown
            else:
                out[k] = self._codes.setdefault(h, len(self._codes))
        return out


def _nearest(
    probes: np.ndarray,
    probe_photos: np.ndarray,
    probe_identities: np.ndarray | None,
    gallery: FaceSample,
    gallery_photos: np.ndarray,
    only_identities: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe: (distance to the nearest gallery face of another identity, its gallery index,
    distance to the nearest gallery face of its own identity). A face of the probe's own photo
    (the same bytes) is never its match. `only_identities`: per probe, the one identity it is
    compared with (a rejection), instead of every other."""
    n = len(probes)
    other = np.full(n, np.inf)
    other_at = np.full(n, -1, np.int64)
    own = np.full(n, np.inf)
    if n == 0 or len(gallery.face_ids) == 0:
        return other, other_at, own
    vectors = gallery.vectors.astype(np.float32)
    squared_norms = np.einsum("ij,ij->i", vectors, vectors)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        block = probes[start:stop].astype(np.float32)
        squared = np.einsum("ij,ij->i", block, block)[:, None] + squared_norms[None] - 2.0 * (block @ vectors.T)
        squared[probe_photos[start:stop, None] == gallery_photos[None]] = np.inf
        if only_identities is not None:
            mine = only_identities[start:stop, None] == gallery.identity_ids[None]
            candidates = np.where(mine, squared, np.inf)
        else:
            mine = probe_identities[start:stop, None] == gallery.identity_ids[None]  # type: ignore[index]
            candidates = np.where(mine, np.inf, squared)
            own[start:stop] = np.sqrt(np.maximum(np.where(mine, squared, np.inf).min(axis=1), 0.0))
        at = candidates.argmin(axis=1)
        other[start:stop] = np.sqrt(np.maximum(candidates[np.arange(stop - start), at], 0.0))
        other_at[start:stop] = at
    other_at[~np.isfinite(other)] = -1
    return other, other_at, own


def _subsample(sample: FaceSample, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of a seeded sample of `limit` faces, or of all of them."""
    n = len(sample.face_ids)
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def _take(sample: FaceSample, k: np.ndarray) -> FaceSample:
    return FaceSample(
        sample.face_ids[k], sample.identity_ids[k], [sample.content_hashes[i] for i in k], sample.vectors[k]
    )


def search_all(
    placed: FaceSample,
    rejected: FaceSample,
    nobody: FaceSample | None,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
    same_face_distance: float | None = None,
) -> Searches:
    """Every probe's search against all the placed faces (see the module's text); of each kind
    of probe, a seeded sample of `max_probes` at most (the time grows with probes x placed)."""
    rng = np.random.default_rng(seed)
    codes = PhotoCodes()
    placed_photos = codes.of(placed.content_hashes)
    k = _subsample(placed, max_probes, rng)
    other, other_at, own = _nearest(placed.vectors[k], placed_photos[k], placed.identity_ids[k], placed, placed_photos)
    parts = [(placed.face_ids[k], PLACED, other, other_at)]
    if nobody is not None:
        nobody = _take(nobody, _subsample(nobody, max_probes, rng))
    rejected = _take(rejected, _subsample(rejected, max_probes, rng))

    covered = set(placed.face_ids.tolist())
    same_shot = 0
    if nobody is not None and len(nobody.face_ids):
        # a face of nobody is asked against every placed face (its identity, if any, is unnamed)
        distance, at, _ = _nearest(
            nobody.vectors, codes.of(nobody.content_hashes), np.full(len(nobody.face_ids), -2), placed, placed_photos
        )
        # the same shot of a placed face (a burst, an edited copy): dedup's same face
        within = DedupThresholds().same_face_distance if same_face_distance is None else same_face_distance
        close = distance <= within
        same_shot = int(close.sum())
        parts.append((nobody.face_ids[~close], NOBODY, distance[~close], at[~close]))
        covered |= set(nobody.face_ids.tolist())

    keep = np.array([f not in covered for f in rejected.face_ids.tolist()], bool)
    if keep.any():
        # a rejected face that no other search covers, against the people it was said not to be
        distance, at, _ = _nearest(
            rejected.vectors[keep],
            codes.of([h for h, k in zip(rejected.content_hashes, keep) if k]),
            None,
            placed,
            placed_photos,
            only_identities=rejected.identity_ids[keep],
        )
        ids = rejected.face_ids[keep]
        best: dict[int, int] = {}  # one search per face, however many people it was rejected from
        for row, face in enumerate(ids.tolist()):
            if face not in best or distance[row] < distance[best[face]]:
                best[face] = row
        chosen = np.array(sorted(best.values()), np.int64)
        parts.append((ids[chosen], REJECTED, distance[chosen], at[chosen]))

    face_ids = np.concatenate([p[0] for p in parts]).astype(np.int64)
    kinds = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    distance = np.concatenate([p[2] for p in parts])
    at = np.concatenate([p[3] for p in parts]).astype(np.int64)
    searched = np.isfinite(distance)  # nobody to compare with: one person alone, say
    at = at[searched]
    return Searches(
        face_ids=face_ids[searched],
        kinds=kinds[searched],
        impostor=distance[searched],
        impostor_face_ids=placed.face_ids[at] if at.size else np.zeros(0, np.int64),
        impostor_identity_ids=placed.identity_ids[at] if at.size else np.zeros(0, np.int64),
        own=own,
        other_of_placed=other,
        same_shot_left_out=same_shot,
    )


def probes_needed(far: float) -> int:
    """The fewest searches at which none naming anyone puts the 95% interval's upper end of the
    FPIR within `far`: Wilson's bound at zero is z^2 / (n + z^2)."""
    z2 = 1.959963984540054**2
    return math.ceil(z2 * (1 - far) / far - 1e-9)


def allowed_by_bound(far: float, n: int) -> int:
    """The most false identifications among n searches whose rate's 95% upper end is <= far (-1: none)."""
    k = -1
    while k + 1 <= n and wilson_interval(k + 1, n)[1] <= far:
        k += 1
    return k


def allowed_observed(far: float, n: int) -> int:
    # floor(far * n), corrected so that k / n <= far holds in float division
    k = math.floor(far * n)
    while (k + 1) / n <= far:
        k += 1
    while k > 0 and k / n > far:
        k -= 1
    return k


def threshold_allowing(impostor_sorted: np.ndarray, allowed: int) -> float:
    """The largest threshold (accept d <= t) that lets `allowed` of these distances through: just
    below the next one, raised to the largest distance below it when that lies in the margin, so
    the same pair measured again in float32 (pgvector) cannot slip under it."""
    if allowed < 0:
        raise ValueError("no threshold lets a negative number of searches through")
    if allowed >= impostor_sorted.size:
        return 2.0  # unit vectors are never farther apart
    first_named = impostor_sorted[allowed]
    below = impostor_sorted[impostor_sorted < first_named]
    threshold = float(first_named) - CALIBRATION_MARGIN
    if below.size:
        threshold = max(threshold, float(below[-1]))
    return min(threshold, 2.0)


def _rate(count: int, n: int) -> tuple[float | None, list[float] | None]:
    return (count / n, wilson_interval(count, n)) if n else (None, None)


def calibrate(
    placed: FaceSample,
    rejected: FaceSample,
    nobody: FaceSample | None,
    far: float,
    default_threshold: float,
    *,
    unnamed_people_available: int = 0,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
    same_face_distance: float | None = None,
) -> dict:
    """The threshold for `far` false identifications of strangers, what it costs the people,
    and what it rests on (the fields of results.CalibrationResult that the database does not
    add). `nobody`: faces of no named identity, counted as strangers (None: not asked);
    `unnamed_people_available`: how many unnamed people the archive has, for the advice;
    `same_face_distance`: the model's, for faces of nobody in the same shot as a placed face
    (None: the default model's)."""
    if not 0 < far < 0.5:
        raise ValueError(f"far must lie between 0 and 0.5, not {far}")
    searches = search_all(placed, rejected, nobody, max_probes, seed, same_face_distance)
    impostor = np.sort(searches.impostor)
    n = int(impostor.size)
    people = int(len(np.unique(placed.identity_ids)))
    unnamed = None
    if nobody is not None:  # the unnamed person of each face of nobody asked (-1: unassigned)
        asked_nobody = nobody.identity_ids[np.isin(nobody.face_ids, searches.face_ids[searches.kinds == NOBODY])]
        unnamed = int(len(np.unique(asked_nobody[asked_nobody >= 0])))
    identities = people + (unnamed or 0)
    genuine = np.isfinite(searches.own)
    genuine_probes = int(genuine.sum())

    def named_at(t: float) -> int:
        return int(np.searchsorted(impostor, t, side="right"))

    def found_at(t: float) -> int:
        return int(((searches.own <= t) & (searches.own <= searches.other_of_placed) & genuine).sum())

    needed = {"identities": MIN_IDENTITIES, "probes": probes_needed(far), "genuine_probes": MIN_GENUINE}
    short = []
    if identities < needed["identities"]:
        short.append(f"{identities} people ({MIN_IDENTITIES} needed)")
    if n < needed["probes"]:
        short.append(f"{n} searches ({needed['probes']} needed for FPIR {far:g})")
    if genuine_probes < needed["genuine_probes"]:
        short.append(f"{genuine_probes} faces with another photo of their person ({MIN_GENUINE} needed)")
    enough = not short

    measured = threshold_allowing(impostor, allowed_observed(far, n)) if n else None
    if enough:
        threshold = threshold_allowing(impostor, allowed_by_bound(far, n))
        decision, reason = "calibrated", None
    elif measured is not None and measured < default_threshold:
        threshold, decision = measured, "tightened"
        reason = (
            f"tightened to {measured:.4f}: at the default {default_threshold:g}, {named_at(default_threshold)} of "
            f"{n} searches name someone they are not; too little evidence to loosen it ({', '.join(short)})"
        )
    else:
        threshold, decision = default_threshold, "kept the default"
        advice = "name more people"
        if nobody is None:
            advice += (
                f", use --with-unlabelled if the archive's {unnamed_people_available} unnamed people are strangers"
                if unnamed_people_available
                else ", use --with-unlabelled on an archive of many unnamed people (after facedb cluster)"
            )
        reason = (
            f"kept the default {default_threshold:g}: {', '.join(short)} are too few to loosen it (strangers "
            f"look more like your people than your people look like each other); {advice}, or ask a larger --far"
        )
    false_ids = named_at(threshold)
    fpir, fpir_ci = _rate(false_ids, n)
    at_default = named_at(default_threshold)
    fpir_default, fpir_default_ci = _rate(at_default, n)
    found = found_at(threshold)
    recall, recall_ci = _rate(found, genuine_probes)
    closest = np.argsort(searches.impostor, kind="stable")[:3]
    return {
        "method": METHOD,
        "threshold": float(threshold),
        "measured_threshold": measured,
        "default_threshold": float(default_threshold),
        "decision": decision,
        "reason": reason,
        "far_target": far,
        "enough": enough,
        "needed": needed,
        "people": people,
        "unnamed_people": unnamed,
        "unassigned_faces": None if nobody is None else int((asked_nobody < 0).sum()),
        "identities": identities,
        "placed_faces": int(len(placed.face_ids)),
        "probes": n,
        "probes_of_people": int((searches.kinds == PLACED).sum()),
        "probes_of_nobody": int((searches.kinds == NOBODY).sum()),
        "probes_rejected": int((searches.kinds == REJECTED).sum()),
        "same_shot_left_out": searches.same_shot_left_out,
        "false_identifications": false_ids,
        "fpir": fpir,
        "fpir_ci": fpir_ci,
        "false_identifications_at_default": at_default,
        "fpir_at_default": fpir_default,
        "fpir_at_default_ci": fpir_default_ci,
        "genuine_probes": genuine_probes,
        "recall": recall,
        "recall_ci": recall_ci,
        "recall_at_default": _rate(found_at(default_threshold), genuine_probes)[0],
        "closest_impostors": [
            {
                "face_id": int(searches.face_ids[k]),
                "kind": str(searches.kinds[k]),
                "nearest_face_id": int(searches.impostor_face_ids[k]),
                "nearest_identity_id": int(searches.impostor_identity_ids[k]),
                "distance": float(searches.impostor[k]),
            }
            for k in closest
        ],
    }
