"""Dedup reports: five tiers a user can filter on, each finding explained, nothing deleted.

1 identical        the same bytes under different paths
2 same picture     re-encoded, resized, converted or EXIF-rotated: perceptual hashes within a
                   few bits, the same shape, and (when there are faces) the same faces at the
                   same places
3 near duplicate   bursts (close capture times and close hashes) and small edits (the same
                   faces at almost the same places): kept apart from 2, so a burst is not a copy
4 same face twice  faces in different photos with nearly identical embeddings (a copy or crop
                   of one shot of a person)
5 same person      two people whose faces are closer than the identity threshold: a merge suggestion
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ..files.images import hamming
from ..vision.weights import model_distances


@dataclass
class DedupPhoto:
    id: int
    path: str
    content_hash: str | None
    size: int | None
    mtime_ns: int | None
    width: int
    height: int
    format: str | None
    taken_at: datetime | None
    camera: str | None
    has_gps: bool
    phash: int | None
    face_count: int


@dataclass
class DedupFace:
    id: int
    photo_id: int
    box: tuple[float, float, float, float]
    vector: np.ndarray


TIERS = {1: "identical", 2: "same_picture", 3: "near_duplicate", 4: "same_face", 5: "same_person"}
# Formats a camera or phone writes, before conversions.
_ORIGINAL_FORMATS = {"JPEG": 0, "MPO": 0, "HEIF": 0, "HEIC": 0, "TIFF": 1, "PNG": 2}


@dataclass(frozen=True)
class DedupThresholds:
    """Bits and seconds are the photos'; the face distances are the default model's (the
    measurements below), and `for_model` takes another model's from its manifest entry."""

    # Re-encoding, resizing and format changes moved 0 bits on the test photos; different
    # photos were 26+ bits apart, frames of one video 6-30.
    same_picture_bits: int = 4
    near_duplicate_bits: int = 24
    burst_seconds: float = 10.0
    # A face in a re-encoded, resized or converted copy moved 0.09-0.32 (the detector's box
    # shifts a little); two different photos of one person were never closer than 0.33, and
    # frames of one video (a burst) 0.40 or more.
    same_picture_face_distance: float = 0.35
    near_duplicate_face_distance: float = 0.50
    same_face_distance: float = 0.35
    same_picture_shift: float = 0.03  # face centres, as a fraction of the photo's size
    near_duplicate_shift: float = 0.10
    aspect_tolerance: float = 0.02

    @classmethod
    def for_model(cls, model: str | None = None) -> DedupThresholds:
        own = model_distances(model)
        return cls(
            same_picture_face_distance=own.same_face_distance,
            near_duplicate_face_distance=own.near_duplicate_face_distance,
            same_face_distance=own.same_face_distance,
        )


SAME_PICTURE_BITS = DedupThresholds.same_picture_bits


def same_picture(a: tuple[str | None, int | None], b: tuple[str | None, int | None]) -> bool:
    """Two photos, each (sha256 of the bytes, perceptual hash), are copies of one picture:
    the same bytes, or hashes at most SAME_PICTURE_BITS apart (re-encoded, resized, converted)."""
    (hash_a, phash_a), (hash_b, phash_b) = a, b
    if hash_a is not None and hash_a == hash_b:
        return True
    return phash_a is not None and phash_b is not None and hamming(phash_a, phash_b) <= SAME_PICTURE_BITS


def picture_pairs(photos: Sequence[tuple[int, str | None, int | None]]) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of entries (photo id, sha256, perceptual hash) whose photos differ
    but are copies of one picture (same_picture). Perceptual hashes are compared within
    buckets of 13 bits, five a hash, so that two hashes at most SAME_PICTURE_BITS apart always
    share one; the same bytes are paired directly."""
    pairs: set[tuple[int, int]] = set()
    by_hash: dict[str, list[int]] = {}
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, (photo_id, sha, phash) in enumerate(photos):
        if sha is not None:
            for j in by_hash.setdefault(sha, []):
                if photos[j][0] != photo_id:
                    pairs.add((j, i))
            by_hash[sha].append(i)
        if phash is not None:
            bits = phash & ((1 << 64) - 1)
            for part in range(5):
                bucket = buckets.setdefault((part, (bits >> (13 * part)) & 0x1FFF), [])
                for j in bucket:
                    if photos[j][0] != photo_id and same_picture((None, photos[j][2]), (None, phash)):
                        pairs.add((j, i))
                bucket.append(i)
    return sorted(pairs)


def distinct_count(n: int, same: Iterable[tuple[int, int]]) -> int:
    """How many of n things are left when each pair in `same` counts as one."""
    groups = UnionFind()
    for i in range(n):
        groups.find(i)
    for a, b in same:
        groups.union(a, b)
    return len({groups.find(i) for i in range(n)})


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        found: dict[int, list[int]] = {}
        for x in self.parent:
            found.setdefault(self.find(x), []).append(x)
        return sorted((sorted(g) for g in found.values() if len(g) > 1), key=lambda g: g[0])


def faces_match(
    a: DedupPhoto,
    b: DedupPhoto,
    faces_a: list[DedupFace],
    faces_b: list[DedupFace],
    max_distance: float,
    max_shift: float,
) -> tuple[bool, list[float]]:
    """Same number of faces, each paired with one of the other photo's faces that is nearly
    identical and at nearly the same place (centres relative to the photo's size)."""
    if len(faces_a) != len(faces_b) or not faces_a:
        return False, []
    pairs = []
    for i, fa in enumerate(faces_a):
        for j, fb in enumerate(faces_b):
            d = float(np.linalg.norm(fa.vector - fb.vector))
            pairs.append((d, i, j))
    used_a, used_b, distances = set(), set(), []
    for d, i, j in sorted(pairs):
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        fa, fb = faces_a[i], faces_b[j]
        shift = max(abs(_centre(fa, a)[0] - _centre(fb, b)[0]), abs(_centre(fa, a)[1] - _centre(fb, b)[1]))
        if d > max_distance or shift > max_shift:
            return False, []
        distances.append(round(d, 4))
    return True, distances


def _centre(face: DedupFace, photo: DedupPhoto) -> tuple[float, float]:
    x, y, w, h = face.box
    return (x + w / 2) / max(photo.width, 1), (y + h / 2) / max(photo.height, 1)


def _aspect_close(a: DedupPhoto, b: DedupPhoto, tolerance: float) -> bool:
    ra, rb = a.width / max(a.height, 1), b.width / max(b.height, 1)
    return abs(ra - rb) <= tolerance * max(ra, rb)


def keep_choice(photos: list[DedupPhoto]) -> tuple[int, str]:
    """Which photo to keep, and why: largest resolution, original format, has EXIF, earliest."""

    def rank(p: DedupPhoto):
        when = p.taken_at or datetime.max
        return (
            -(p.width * p.height),
            _ORIGINAL_FORMATS.get((p.format or "").upper(), 3),
            not _has_exif(p),
            when,
            p.mtime_ns or 0,
            p.path,
        )

    ordered = sorted(photos, key=rank)
    best, others = ordered[0], ordered[1:]
    fmt = lambda p: _ORIGINAL_FORMATS.get((p.format or "").upper(), 3)  # noqa: E731
    reasons = []
    # Say each way in which the kept photo beats at least one other, in order of weight.
    if any(best.width * best.height > o.width * o.height for o in others):
        reasons.append(f"largest resolution ({best.width}x{best.height})")
    if any(fmt(best) < fmt(o) for o in others):
        reasons.append(f"original format ({best.format})")
    if _has_exif(best) and any(not _has_exif(o) for o in others):
        reasons.append("has EXIF (capture time, camera)")
    if best.taken_at and any(o.taken_at is None or best.taken_at < o.taken_at for o in others):
        reasons.append(f"earliest capture ({best.taken_at.isoformat(sep=' ')})")
    if not reasons:
        reasons.append(
            "earliest file"
            if any((best.mtime_ns or 0) < (o.mtime_ns or 0) for o in others)
            else "first by path (the copies are alike)"
        )
    return best.id, "; ".join(reasons)


def _has_exif(p: DedupPhoto) -> bool:
    return bool(p.taken_at or p.camera or p.has_gps)


def photo_record(p: DedupPhoto) -> dict:
    return {
        "id": p.id,
        "path": p.path,
        "size": p.size,
        "width": p.width,
        "height": p.height,
        "format": p.format,
        "taken_at": p.taken_at.isoformat() if p.taken_at else None,
        "camera": p.camera,
        "has_exif": _has_exif(p),
        "faces": p.face_count,
        "phash": f"{p.phash & ((1 << 64) - 1):016x}" if p.phash is not None else None,
        "sha256": p.content_hash,
    }


def classify_photo_pairs(
    photos: dict[int, DedupPhoto],
    faces: dict[int, list[DedupFace]],
    identical: list[list[int]],
    candidates: set[tuple[int, int]],
    bursts: set[tuple[int, int]],
    t: DedupThresholds,
) -> tuple[list[dict], list[dict], dict[int, int]]:
    """Tier 2 and tier 3 groups from candidate photo pairs, each with its evidence, and the
    photo that stands for each copy (the one to keep of its tier 1-2 group)."""
    same_bytes = UnionFind()
    for group in identical:
        for other in group[1:]:
            same_bytes.union(group[0], other)
    tier2, tier3 = UnionFind(), UnionFind()
    evidence2: list[dict] = []
    evidence3: list[dict] = []
    pairs = []
    for a_id, b_id in sorted(candidates | bursts):
        a, b = photos.get(a_id), photos.get(b_id)
        if a is None or b is None or same_bytes.find(a_id) == same_bytes.find(b_id):
            continue
        bits = hamming(a.phash, b.phash) if a.phash is not None and b.phash is not None else None
        seconds = abs((a.taken_at - b.taken_at).total_seconds()) if a.taken_at and b.taken_at else None
        pairs.append((a, b, bits, seconds, {"a": a_id, "b": b_id, "hamming": bits, "seconds_apart": seconds}))
    # First every copy of a picture (tier 2), then what is near but not the same picture (tier 3).
    for a, b, bits, _seconds, base in pairs:
        if bits is None or bits > t.same_picture_bits or not _aspect_close(a, b, t.aspect_tolerance):
            continue
        fa, fb = faces.get(a.id, []), faces.get(b.id, [])
        if not fa and not fb and a.face_count == b.face_count == 0:
            tier2.union(a.id, b.id)
            evidence2.append(base | {"why": f"perceptual hashes {bits} bits apart, same shape, no faces"})
            continue
        same, distances = faces_match(a, b, fa, fb, t.same_picture_face_distance, t.same_picture_shift)
        if same:
            tier2.union(a.id, b.id)
            evidence2.append(
                base
                | {
                    "face_distances": distances,
                    "why": f"perceptual hashes {bits} bits apart, same shape, "
                    f"the same {len(distances)} face(s) at the same places",
                }
            )
    tier2_groups = _photo_groups(2, tier2.groups(), evidence2, photos)
    # Copies are reported once: from here on each tier 1-2 group stands for its kept photo.
    representative: dict[int, int] = {}
    for group in [{"keep": keep_choice([photos[i] for i in g if i in photos])[0], "ids": g} for g in identical] + [
        {"keep": g["keep"], "ids": [p["id"] for p in g["photos"]]} for g in tier2_groups
    ]:
        for i in group["ids"]:
            representative.setdefault(i, group["keep"])
    seen = set()
    for a, b, bits, _seconds, base in pairs:
        a, b = photos[representative.get(a.id, a.id)], photos[representative.get(b.id, b.id)]
        key = (min(a.id, b.id), max(a.id, b.id))
        if a.id == b.id or key in seen:
            continue
        seen.add(key)
        bits = hamming(a.phash, b.phash) if a.phash is not None and b.phash is not None else None
        seconds = abs((a.taken_at - b.taken_at).total_seconds()) if a.taken_at and b.taken_at else None
        base = {"a": key[0], "b": key[1], "hamming": bits, "seconds_apart": seconds}
        same, distances = faces_match(
            a, b, faces.get(a.id, []), faces.get(b.id, []), t.near_duplicate_face_distance, t.near_duplicate_shift
        )
        if same:
            tier3.union(a.id, b.id)
            evidence3.append(
                base
                | {"face_distances": distances, "why": f"the same {len(distances)} face(s) at almost the same places"}
            )
        elif seconds is not None and seconds <= t.burst_seconds and bits is not None and bits <= t.near_duplicate_bits:
            tier3.union(a.id, b.id)
            evidence3.append(
                base | {"why": f"taken {seconds:g} s apart, perceptual hashes {bits} bits apart (a burst)"}
            )
        elif bits is not None and bits <= t.same_picture_bits:
            tier3.union(a.id, b.id)
            evidence3.append(
                base | {"why": f"perceptual hashes {bits} bits apart, but the faces or shape differ (an edit)"}
            )
    return tier2_groups, _photo_groups(3, tier3.groups(), evidence3, photos), representative


def _photo_groups(
    tier: int, groups: list[list[int]], evidence: list[dict], photos: dict[int, DedupPhoto]
) -> list[dict]:
    out = []
    for number, group in enumerate(groups, 1):
        members = set(group)
        keep, reason = keep_choice([photos[i] for i in group])
        out.append(
            {
                "tier": tier,
                "kind": TIERS[tier],
                "id": f"t{tier}-{number}",
                "keep": keep,
                "reason": reason,
                "photos": [photo_record(photos[i]) for i in group],
                "evidence": [e for e in evidence if e["a"] in members and e["b"] in members],
            }
        )
    return out


def identical_groups(groups: list[list[int]], photos: dict[int, DedupPhoto]) -> list[dict]:
    out = []
    for number, group in enumerate(groups, 1):
        members = [photos[i] for i in group if i in photos]
        keep, reason = keep_choice(members)
        out.append(
            {
                "tier": 1,
                "kind": TIERS[1],
                "id": f"t1-{number}",
                "keep": keep,
                "reason": reason,
                "photos": [photo_record(p) for p in members],
                "evidence": [{"why": f"identical bytes (sha256 {(members[0].content_hash or '')[:16]}...)"}],
            }
        )
    return out


def same_face_groups(
    pairs: list[tuple[int, int, float]],
    faces: dict[int, DedupFace],
    photos: dict[int, DedupPhoto],
    explained: UnionFind | None = None,
    representative: dict[int, int] | None = None,
) -> list[dict]:
    found = UnionFind()
    evidence = []
    representative = representative or {}
    for a, b, d in pairs:
        fa, fb = faces.get(a), faces.get(b)
        if fa is None or fb is None or fa.photo_id not in photos or fb.photo_id not in photos:
            continue
        if (
            representative.get(fa.photo_id, fa.photo_id) != fa.photo_id
            or representative.get(fb.photo_id, fb.photo_id) != fb.photo_id
        ):
            continue  # a copy's faces are reported through the photo kept for it
        if explained is not None and explained.find(fa.photo_id) == explained.find(fb.photo_id):
            continue  # the photos are already reported as copies or near duplicates (tiers 1-3)
        found.union(a, b)
        evidence.append({"a": a, "b": b, "distance": round(d, 4)})
    out = []
    for number, group in enumerate(found.groups(), 1):
        members = set(group)
        group_photos = [photos[faces[f].photo_id] for f in group]
        keep, reason = keep_choice(group_photos)
        out.append(
            {
                "tier": 4,
                "kind": TIERS[4],
                "id": f"t4-{number}",
                "keep": keep,
                "reason": reason,
                "faces": [
                    {
                        "face_id": f,
                        "photo": photo_record(photos[faces[f].photo_id]),
                        "box": [round(v, 1) for v in faces[f].box],
                    }
                    for f in group
                ],
                "evidence": [
                    e | {"why": f"embeddings {e['distance']:.3f} apart: the same shot of a face"}
                    for e in evidence
                    if e["a"] in members and e["b"] in members
                ],
            }
        )
    return out


def same_person_groups(pairs: list[dict]) -> list[dict]:
    out = []
    for number, pair in enumerate(pairs, 1):
        a, b = pair["people"]
        # keep the named one, else the one with more faces
        keep = max((a, b), key=lambda p: (p["name"] is not None, p["faces"], -p["id"]))
        other = b if keep is a else a
        out.append(
            {
                "tier": 5,
                "kind": TIERS[5],
                "id": f"t5-{number}",
                "keep": keep["id"],
                "reason": "named" if keep["name"] and not other["name"] else "more faces",
                "people": pair["people"],
                "suggestion": f"facedb merge {keep['id']} {other['id']}",
                "evidence": [
                    {
                        "closest_distance": pair["closest_distance"],
                        "closest_faces": pair["closest_faces"],
                        "face_pairs_within_threshold": pair["face_pairs_within_threshold"],
                        "why": f"faces {pair['closest_distance']:.3f} apart, under the identity threshold",
                    }
                ],
            }
        )
    return out
