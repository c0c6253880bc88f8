"""Turning a clustering into changes to people, and back: the plan `facedb cluster` shows or applies."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..dedup.tiers import UnionFind, same_picture
from ..records import HUMAN_SOURCES
from ..results import ClusterResult, JoiningPerson, MergeSuggestion, NewPerson
from .clustering import (
    NO_IDENTITY,
    ClusterParams,
    ConstrainedGroups,
    FaceSet,
    cluster,
    distances_to,
    nearest_neighbours,
)

NEW = "new-"  # keys of people the plan creates


@dataclass
class ClusterInputs:
    face_ids: np.ndarray
    photo_ids: np.ndarray
    vectors: np.ndarray
    identity_ids: np.ndarray  # -1 where the face has no identity
    sources: list[str | None]
    rejections: list[tuple[int, int]]  # (face id, identity id)
    names: dict[int, str | None]  # identity id -> name
    hidden: frozenset[int] = frozenset()  # people set aside: their faces stay theirs
    # each face's photo: its bytes' sha256 and perceptual hash, to know copies of one picture
    photo_hashes: list[str | None] = field(default_factory=list)
    photo_phashes: list[int | None] = field(default_factory=list)


@dataclass(frozen=True)
class PersonFace:
    face_id: int
    photo_id: int
    path: str
    box: tuple[float, float, float, float]
    source: str
    vector: np.ndarray | None  # None: no embedding of the model asked for (`facedb reembed` makes one)
    taken_at: datetime | None = None


@dataclass
class ClusterPlan:
    faces_considered: int = 0
    new_people: dict[str, list[int]] = field(default_factory=dict)  # new key -> face ids
    joining: dict[int, list[int]] = field(default_factory=dict)  # existing person -> face ids newly in it
    leaving: list[int] = field(default_factory=list)  # face ids whose system assignment goes away
    assignments: list[tuple[int, int | str, str]] = field(default_factory=list)  # (face, person, source)
    merge_suggestions: list[MergeSuggestion] = field(default_factory=list)
    unchanged: int = 0

    def result(self, names: dict[int, str | None], *, dry_run: bool) -> ClusterResult:
        return ClusterResult(
            faces_considered=self.faces_considered,
            new_people=[NewPerson(faces=len(f), face_ids=f) for f in self.new_people.values()],
            joining=[
                JoiningPerson(person_id=p, name=names.get(p), faces=len(f), face_ids=f)
                for p, f in sorted(self.joining.items())
            ],
            leaving=self.leaving,
            unchanged=self.unchanged,
            merge_suggestions=self.merge_suggestions,
            dry_run=dry_run,
        )


def plan_clustering(
    inputs: ClusterInputs,
    params: ClusterParams,
    merge_within: float | None = None,
    say: Callable[[str], None] | None = None,
) -> ClusterPlan:
    """The changes clustering would make, and the people it suggests merging: those with faces
    within `merge_within` of each other (the who threshold when FaceDB plans; eps if None)."""
    n = len(inputs.face_ids)
    plan = ClusterPlan(faces_considered=n)
    if n == 0:
        return plan
    # Faces a person placed, and every face of a hidden person, stay where they are.
    human = np.array(
        [s in HUMAN_SOURCES or int(i) in inputs.hidden for s, i in zip(inputs.sources, inputs.identity_ids)]
    )
    anchor = np.where(human, inputs.identity_ids, NO_IDENTITY)
    row_of = {int(f): i for i, f in enumerate(inputs.face_ids)}
    rejected: dict[int, set[int]] = defaultdict(set)
    for face_id, identity_id in inputs.rejections:
        if face_id in row_of:
            rejected[row_of[face_id]].add(identity_id)
    faces = FaceSet(inputs.face_ids, inputs.photo_ids, inputs.vectors, anchor, dict(rejected))
    merge_within = params.eps if merge_within is None else merge_within
    # the k nearest within the larger radius: clustering itself only looks within eps
    neighbours = nearest_neighbours(inputs.vectors, params.k, max(params.eps, merge_within), say=say)
    labels = cluster(faces, params, neighbours)
    picture = copies_of_one_face(inputs, neighbours, params.same_face_distance)

    desired: dict[int, tuple[int | str, str]] = {}  # row -> (person, source), for faces no human placed
    groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(labels):
        if label >= 0:
            groups[int(label)].append(row)
    current_clustered = {i: int(inputs.identity_ids[i]) for i in range(n) if inputs.sources[i] == "clustered"}
    claimed: set[int] = set()
    unnamed_groups = []
    for _label, rows in sorted(groups.items()):
        people = {int(anchor[r]) for r in rows if anchor[r] != NO_IDENTITY}
        free = [r for r in rows if not human[r]]
        if people:
            (person,) = people  # clustering never joins two people a human set apart
            for r in free:
                desired[r] = (person, "proposed")
        elif len({picture[r] for r in rows}) >= params.min_size:  # a face and its copies count once
            unnamed_groups.append(rows)
    # Keep ids stable: a group takes the id of the existing unnamed person holding most of its
    # faces (largest overlaps first), so names and ids survive a re-run.
    overlaps = []
    for g, rows in enumerate(unnamed_groups):
        for person, count in Counter(current_clustered[r] for r in rows if r in current_clustered).items():
            overlaps.append((-count, person, g))
    owner: dict[int, int | str] = {}
    for _, person, g in sorted(overlaps):
        if g not in owner and person not in claimed:
            owner[g] = person
            claimed.add(person)
    for g, rows in enumerate(unnamed_groups):
        found = owner.get(g)
        group_person = f"{NEW}{min(int(inputs.face_ids[r]) for r in rows)}" if found is None else found
        for r in rows:
            desired[r] = (group_person, "clustered")

    # Lone faces close enough to a person a human set up are proposed to them.
    lone = np.array([r for r in range(n) if not human[r] and r not in desired], np.int64)
    anchors = np.nonzero(human)[0]
    if len(lone) and len(anchors):
        nearest, distance = distances_to(inputs.vectors[lone], inputs.vectors[anchors])
        for r, j, d in zip(lone, nearest, distance):
            person = int(inputs.identity_ids[anchors[j]])
            if d <= params.propose_threshold and person not in faces.rejected.get(int(r), ()):
                desired[int(r)] = (person, "proposed")

    for r in range(n):
        if human[r]:
            continue
        now = (int(inputs.identity_ids[r]), inputs.sources[r]) if inputs.sources[r] else None
        want = desired.get(r)
        face_id = int(inputs.face_ids[r])
        if want == now:
            plan.unchanged += now is not None
            continue
        if want is None:
            plan.leaving.append(face_id)
            continue
        target, source = want
        plan.assignments.append((face_id, target, source))
        if isinstance(target, str):
            plan.new_people.setdefault(target, []).append(face_id)
        elif now is None or now[0] != target:
            plan.joining.setdefault(target, []).append(face_id)
    plan.merge_suggestions = _merge_suggestions(inputs, neighbours, desired, merge_within)
    return plan


def copies_of_one_face(inputs: ClusterInputs, neighbours: tuple[np.ndarray, np.ndarray], within: float) -> np.ndarray:
    """For each face row, the smallest row of the faces it is a copy of (itself if none): the
    same face (nearly the same embedding) in a copy of its photo, as dedup's tiers 1 and 2
    tell copies (the same bytes, or perceptual hashes a few bits apart)."""
    indices, distances = neighbours
    n = len(inputs.face_ids)
    copies = UnionFind()
    for r in range(n):
        for j, d in zip(indices[r], distances[r]):
            if d > within:
                break
            if inputs.photo_ids[r] != inputs.photo_ids[j] and _one_picture(inputs, r, int(j)):
                copies.union(r, int(j))
    return np.array([copies.find(r) for r in range(n)], np.int64)


def _merge_suggestions(inputs: ClusterInputs, neighbours, desired, within: float) -> list[MergeSuggestion]:
    """People whose faces come within `within` of each other's: perhaps one person filed twice.
    Never from two faces of one photo, or of copies of one photo (two people side by side),
    nor from faces merely proposed. Hidden people are not suggested. Nearest pair first."""
    indices, distances = neighbours
    person_of = {}
    for r in range(len(inputs.face_ids)):
        if int(inputs.identity_ids[r]) in inputs.hidden:
            continue
        if inputs.sources[r] in HUMAN_SOURCES:
            person_of[r] = int(inputs.identity_ids[r])
        elif r in desired and not isinstance(desired[r][0], str) and desired[r][1] == "clustered":
            person_of[r] = desired[r][0]  # a proposal is no evidence: it only says who it is near
    closest: dict[tuple[int, int], tuple[float, int, int]] = {}
    pairs: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for r, person in person_of.items():
        for j, d in zip(indices[r], distances[r]):
            if d > within:
                break
            other = person_of.get(int(j))
            if other is None or other == person or _one_picture(inputs, r, int(j)):
                continue
            key = (min(person, other), max(person, other))
            mine, theirs = int(inputs.face_ids[r]), int(inputs.face_ids[j])
            faces = (mine, theirs) if person == key[0] else (theirs, mine)  # in the order of `key`
            pairs.setdefault(key, set()).add(faces)
            if key not in closest or (float(d), *faces) < closest[key]:
                closest[key] = (float(d), *faces)
    return [
        MergeSuggestion(
            people=k,
            names=(inputs.names.get(k[0]), inputs.names.get(k[1])),
            distance=d,
            faces=(fa, fb),
            face_pairs=len(pairs[k]),
        )
        for k, (d, fa, fb) in sorted(closest.items(), key=lambda item: (item[1][0], item[0]))
    ]


def _one_picture(inputs: ClusterInputs, a: int, b: int) -> bool:
    if inputs.photo_ids[a] == inputs.photo_ids[b]:
        return True
    if not inputs.photo_hashes:
        return False
    return same_picture(
        (inputs.photo_hashes[a], inputs.photo_phashes[a]), (inputs.photo_hashes[b], inputs.photo_phashes[b])
    )


@dataclass
class NewFacesInputs:
    """`cluster --incremental`: the faces of nobody new since the last run, and what the search
    index found near each (at most k within a radius), with the people those faces are in."""

    face_ids: list[int]  # the new faces
    edges: list[tuple[int, int, float]]  # (new face, face near it, distance): the index's neighbours
    photo_of: dict[int, int]  # face -> photo, for every face above
    person_of: dict[int, tuple[int, str]]  # face -> (person, source), for the faces in a person
    hidden: frozenset[int]  # people set aside: faces near theirs are proposed to them, never clustered away
    rejections: dict[int, set[int]]  # new face -> people it is not
    pictures: dict[int, tuple[str | None, int | None]]  # face -> its photo's sha256 and perceptual hash


def plan_new_faces(inputs: NewFacesInputs, params: ClusterParams) -> ClusterPlan:
    """The changes clustering the new faces makes, without touching anyone's faces: the rules of
    `plan_clustering` (constrained DBSCAN: core faces, shortest edges first, never two faces of
    one photo or two people together, rejections kept) on the graph of the new faces and their
    neighbours, where every face already in a person anchors that person. The faces of nobody
    in a group holding a person's face (new ones, and older ones they bring in) join that person
    (proposed where a human set that person up, clustered otherwise); a group of nobody's faces
    with `min_size` distinct pictures is a new person; a lone new face within propose_threshold
    of a face a human placed is proposed to that person. Nobody's placed face is moved."""
    new = list(inputs.face_ids)
    plan = ClusterPlan(faces_considered=len(new))
    if not new:
        return plan
    others = sorted({b for _, b, _ in inputs.edges} - set(new))
    ids = np.array(new + others, np.int64)
    row = {int(f): i for i, f in enumerate(ids)}
    anchor = np.array([inputs.person_of[int(f)][0] if int(f) in inputs.person_of else NO_IDENTITY for f in ids])
    faces = FaceSet(
        ids,
        np.array([inputs.photo_of[int(f)] for f in ids], np.int64),
        np.zeros((len(ids), 0), np.float32),
        anchor,
        {row[f]: set(people) for f, people in inputs.rejections.items() if f in row},
    )
    edges = [(row[a], row[b], d) for a, b, d in inputs.edges if d <= params.eps]
    degree = Counter(a for a, _, _ in edges)
    for _, b, _ in edges:
        if b >= len(new):
            degree[b] += 1
    # a new face's neighbours are all faces (as in the full run); a face of a person is core
    core = [degree[i] + 1 >= params.min_samples or anchor[i] != NO_IDENTITY for i in range(len(ids))]
    groups = ConstrainedGroups(faces)
    ordered = sorted(edges, key=lambda e: (e[2], int(ids[min(e[0], e[1])]), int(ids[max(e[0], e[1])])))
    for a, b, _ in ordered:
        if core[a] and core[b]:
            groups.merge(a, b)
    near: dict[int, list[tuple[float, int]]] = defaultdict(list)  # row -> (distance, row), nearest first
    for a, b, d in inputs.edges:
        near[row[a]].append((d, row[b]))
    for neighbours in near.values():
        neighbours.sort()
    border = [i for i in range(len(new)) if not core[i]]
    for i in sorted(border, key=lambda i: (near[i][0][0] if near[i] else 9.0, new[i])):
        for d, j in near[i]:
            if d > params.eps:
                break
            if core[j] and groups.merge(j, i):
                break

    human = {f for f, (_, source) in inputs.person_of.items() if source in HUMAN_SOURCES}
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(ids)):
        members[groups.find(i)].append(i)
    copies = UnionFind()
    for a, b, d in inputs.edges:
        if d <= params.same_face_distance and inputs.photo_of[a] != inputs.photo_of[b]:
            if same_picture(inputs.pictures.get(a, (None, None)), inputs.pictures.get(b, (None, None))):
                copies.union(a, b)
    desired: dict[int, tuple[int | str, str]] = {}  # face -> (person, source)
    for root, rows in members.items():
        if not any(r < len(new) for r in rows):
            continue
        person = groups.identity[root]
        if person != NO_IDENTITY:
            placed = any(int(ids[r]) in human for r in rows) or person in inputs.hidden
            for r in rows:  # the new faces, and faces of nobody from before that they bring in
                if int(ids[r]) not in inputs.person_of:
                    desired[int(ids[r])] = (person, "proposed" if placed else "clustered")
        elif len({copies.find(int(ids[r])) for r in rows}) >= params.min_size:
            # new faces with faces of nobody from earlier runs: a new person, those faces too
            key = f"{NEW}{min(int(ids[r]) for r in rows)}"
            for r in rows:
                desired[int(ids[r])] = (key, "clustered")
    for i, face in enumerate(new):
        if face in desired:
            continue
        for d, j in near[i]:
            if d > params.propose_threshold:
                break
            other = int(ids[j])
            person = inputs.person_of.get(other, (NO_IDENTITY, ""))[0]
            if (other in human or person in inputs.hidden) and person not in inputs.rejections.get(face, ()):
                desired[face] = (person, "proposed")
                break
    for face, (target, source) in sorted(desired.items()):
        plan.assignments.append((face, target, source))
        if isinstance(target, str):
            plan.new_people.setdefault(target, []).append(face)
        else:
            plan.joining.setdefault(target, []).append(face)
    return plan


SPLIT_SILHOUETTE = 0.25  # below it, the parts are no better apart than one person's faces are


@dataclass
class SplitPlan:
    parts: list[list[int]]  # face ids per part, largest first (one part: nothing to split)
    silhouette: float | None  # how far apart the parts are, -1..1 (None with one part)
    spread_whole: float  # the person's mean distance from their centre
    spread_parts: float  # the faces' mean distance from their part's centre
    verdict: str


def split_faces(faces: list[PersonFace], params: ClusterParams, join_within: float) -> SplitPlan:
    """One person's faces clustered again, more tightly (`facedb split`). Parts are groups of
    two faces or more; a face near no other goes to the part whose centre is nearest, never a
    part of its own; parts closer than `join_within` on average are joined again. The split is
    offered only if the parts left are well apart: their mean silhouette (a face's mean
    distance to the nearest other part against its own part's, -1..1) is at least
    SPLIT_SILHOUETTE; otherwise the whole is one part and the verdict says why."""
    faces = [f for f in faces if f.vector is not None]  # the others stay where they are
    vectors = np.stack([f.vector for f in faces if f.vector is not None]) if faces else np.zeros((0, 0), np.float32)
    ids = [f.face_id for f in faces]
    spread_whole = _spread(vectors, [list(range(len(faces)))])
    whole = SplitPlan([ids], None, spread_whole, spread_whole, "")
    if len(faces) < 4:
        whole.verdict = "nothing to split: fewer than 4 faces"
        return whole
    face_set = FaceSet(
        np.array(ids, np.int64),
        np.array([f.photo_id for f in faces], np.int64),
        vectors,
        np.full(len(faces), NO_IDENTITY, np.int64),
    )
    groups: dict[int, list[int]] = {}
    loose = []
    for row, label in enumerate(cluster(face_set, params)):
        if label >= 0:
            groups.setdefault(int(label), []).append(row)
        else:
            loose.append(row)
    rows = sorted(groups.values(), key=lambda g: (-len(g), ids[g[0]]))
    if len(rows) < 2:
        whole.verdict = f"nothing to split: at eps {params.eps} the faces make one group"
        return whole
    centres = np.stack([vectors[g].mean(axis=0) for g in rows])
    for row in loose:
        rows[int(np.argmin(np.linalg.norm(centres - vectors[row], axis=1)))].append(row)
    # A tight radius also cuts one person into poses or copies of one photo: parts whose faces
    # are on average within `join_within` of each other (clustering's own radius) are one
    # person again, the closest pair first (average linkage).
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1)  # hundreds of faces at most
    while len(rows) > 1:
        gap, a, b = min(
            (float(distances[np.ix_(rows[a], rows[b])].mean()), a, b)
            for a in range(len(rows))
            for b in range(a + 1, len(rows))
        )
        if gap > join_within:
            break
        rows = [p for k, p in enumerate(rows) if k not in (a, b)] + [rows[a] + rows[b]]
    if len(rows) < 2:
        whole.verdict = f"nothing to split: its groups at eps {params.eps} are within {join_within} of each other"
        return whole
    silhouette = _silhouette(distances, rows)
    spread_parts = _spread(vectors, rows)
    measured = f"silhouette {silhouette:.2f}; mean distance from the centre {spread_whole:.3f} whole, {spread_parts:.3f} in the parts"
    if silhouette < SPLIT_SILHOUETTE:
        whole.silhouette = silhouette
        whole.verdict = f"nothing to split: the parts are not apart ({measured}; a split needs {SPLIT_SILHOUETTE})"
        return whole
    parts = sorted(([ids[r] for r in sorted(g)] for g in rows), key=lambda p: (-len(p), p[0]))
    return SplitPlan(parts, silhouette, spread_whole, spread_parts, f"{len(parts)} parts well apart ({measured})")


def _spread(vectors: np.ndarray, parts: list[list[int]]) -> float:
    if not len(vectors):
        return 0.0
    total = sum(float(np.linalg.norm(vectors[p] - vectors[p].mean(axis=0), axis=1).sum()) for p in parts if p)
    return total / sum(len(p) for p in parts)


def _silhouette(distances: np.ndarray, parts: list[list[int]]) -> float:
    """The mean silhouette of a partition: for each face, (b - a) / max(a, b), a its mean
    distance to the rest of its part, b to the nearest other part (a face alone in its part: 0)."""
    n = len(distances)
    member = np.zeros((n, len(parts)))
    for k, part in enumerate(parts):
        member[part, k] = 1.0
    sizes = member.sum(axis=0)
    sums = distances @ member  # [face, part]: summed distances
    own = member.argmax(axis=1)
    rest = sizes[own] - 1
    a = np.where(rest > 0, sums[np.arange(n), own] / np.maximum(rest, 1), 0.0)
    others = np.where(member > 0, np.inf, sums / np.maximum(sizes, 1))
    b = others.min(axis=1)
    scores = np.where((rest > 0) & (np.maximum(a, b) > 0), (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(scores.mean())
