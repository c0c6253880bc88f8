"""The dedup report (`facedb dedup`): candidate pairs from the database's indexes, classified
into tiers by the rules of tiers.py. Nothing is deleted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ..db.dedup import DedupStore
from ..dedup.tiers import (
    TIERS,
    DedupThresholds,
    UnionFind,
    classify_photo_pairs,
    identical_groups,
    same_face_groups,
    same_person_groups,
)
from ..errors import ImageError
from ..files.images import decode, read_file


def dedup_report(
    store: DedupStore,
    prefixes: Sequence[str],
    t: DedupThresholds,
    tiers: tuple[int, ...],
    *,
    identity_threshold: float,
    same_person: Callable[[], list[dict]],
    max_pixels: int,
    read_workers: int,
    say: Callable[[str], None],
) -> dict:
    """Groups in tiers, each with a photo to keep and why, for photos under `prefixes` (all
    when empty). Perceptual hashes missing from photos indexed before facedb stored them are
    computed first. Tier 5 is `same_person()`: clustering's merge suggestions, so that the
    two never disagree."""
    missing = store.missing_phash(prefixes)
    if missing:
        say(f"perceptual hashes: computing {len(missing)} missing")
        store.set_phash(_phashes(missing, max_pixels, read_workers))
    photos = store.photos(prefixes)
    say(f"{len(photos)} photos in scope")
    identical = store.identical(prefixes)
    candidates = {(a, b) for a, b, _ in store.phash_pairs(prefixes, t.near_duplicate_bits)}
    bursts = set(store.burst_pairs(prefixes, t.burst_seconds))
    face_pairs = store.face_pairs(prefixes, max(t.near_duplicate_face_distance, t.same_face_distance))
    faces_by_id = {f.id: f for f in store.faces(face_ids=sorted({f for a, b, _ in face_pairs for f in (a, b)}))}
    for a, b, _ in face_pairs:
        pa, pb = faces_by_id[a].photo_id, faces_by_id[b].photo_id
        candidates.add((min(pa, pb), max(pa, pb)))
    say(f"candidate pairs: {len(candidates)} by perceptual hash or faces, {len(bursts)} by capture time")
    in_pairs = sorted({p for pair in candidates | bursts for p in pair})
    faces_by_photo: dict[int, list] = {}
    for face in store.faces(photo_ids=in_pairs):
        faces_by_photo.setdefault(face.photo_id, []).append(face)
    tier2, tier3, representative = classify_photo_pairs(photos, faces_by_photo, identical, candidates, bursts, t)
    tier1 = identical_groups(identical, photos)
    explained = UnionFind()
    for group in tier1 + tier2 + tier3:
        ids = [p["id"] for p in group["photos"]]
        for other in ids[1:]:
            explained.union(ids[0], other)
    tier4 = same_face_groups(
        [p for p in face_pairs if p[2] <= t.same_face_distance], faces_by_id, photos, explained, representative
    )
    tier5 = same_person_groups(same_person()) if 5 in tiers else []
    groups = [g for g in tier1 + tier2 + tier3 + tier4 + tier5 if g["tier"] in tiers]
    say(f"{len(groups)} groups")
    return {
        "format": "facedb-dedup",
        "version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scope": prefixes or None,
        "photos": len(photos),
        "thresholds": asdict(t) | {"identity_threshold": identity_threshold},
        "counts": {TIERS[n]: sum(g["tier"] == n for g in groups) for n in sorted(tiers)},
        "groups": groups,
    }


def _phashes(photos: list[tuple[int, str]], max_pixels: int, read_workers: int) -> list[tuple[int, int]]:
    """Perceptual hashes for photos indexed before facedb stored them."""

    def one(item: tuple[int, str]) -> tuple[int, int] | None:
        try:
            data, _ = read_file(Path(item[1]))
            phash = decode(data, max_pixels).meta.phash
        except ImageError:
            return None
        return None if phash is None else (item[0], phash)

    with ThreadPoolExecutor(max_workers=max(1, read_workers)) as pool:
        return [r for r in pool.map(one, photos) if r is not None]
