"""Clustering quality on real labelled photos, and its parameters chosen from measurement.

Indexes the labelled people (plus mirrored variants) and the group photos (strangers, as
distractors) into a temporary embedded database, in two different orders, then measures
for a range of `eps` and `min_size`: BCubed precision/recall/F over the labelled faces
(faces left out count as clusters of one), pairwise precision/recall, people found vs true,
and whether both indexing orders give the same partition. Run: python benchmarks/cluster_quality.py"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from facedb import FaceDB, Settings  # noqa: E402
from facedb import samples as photos
from facedb.people.clustering import ClusterParams  # noqa: E402
from facedb.people.plan import plan_clustering  # noqa: E402


def partition_of(plan, inputs, path_of) -> dict[int, str]:
    """face id -> cluster key, from a dry-run plan (every face starts unassigned)."""
    label = {}
    for face_id, person, _ in plan.assignments:
        label[face_id] = str(person)
    return {int(f): label.get(int(f), f"alone-{f}") for f in inputs.face_ids}


def scores(truth: dict[int, str], clusters: dict[int, str]) -> dict:
    faces = list(truth)
    by_cluster, by_truth = {}, {}
    for f in faces:
        by_cluster.setdefault(clusters[f], set()).add(f)
        by_truth.setdefault(truth[f], set()).add(f)
    precision = np.mean(
        [len(by_cluster[clusters[f]] & by_truth[truth[f]]) / len(by_cluster[clusters[f]] & set(faces)) for f in faces]
    )
    recall = np.mean([len(by_cluster[clusters[f]] & by_truth[truth[f]]) / len(by_truth[truth[f]]) for f in faces])
    same_cluster = same_truth = both = 0
    for a, b in itertools.combinations(faces, 2):
        c, t = clusters[a] == clusters[b], truth[a] == truth[b]
        same_cluster += c
        same_truth += t
        both += c and t
    found = {clusters[f] for f in faces if not clusters[f].startswith("alone-")}
    return {
        "bcubed_precision": round(float(precision), 4),
        "bcubed_recall": round(float(recall), 4),
        "bcubed_f": round(float(2 * precision * recall / (precision + recall)), 4),
        "pairwise_precision": round(both / same_cluster, 4) if same_cluster else 1.0,
        "pairwise_recall": round(both / same_truth, 4) if same_truth else 1.0,
        "people_found": len(found),
        "people_true": len(set(truth.values())),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="facedb-cluster-") as scratch:
        scratch = Path(scratch)
        people = scratch / "people"
        truth_by_name = photos.lay_out_people(people)
        groups = scratch / "groups"
        groups.mkdir()
        for name in photos.GROUPS:
            shutil.copy(photos.path(name), groups / name.replace("/", "__"))
        files = sorted(people.iterdir()) + sorted(groups.iterdir())
        runs = []
        for order_name, order in (("sorted", files), ("reversed", files[::-1])):
            facedb = FaceDB(Settings.load(home=str(scratch / f"home-{order_name}")))
            for f in order:
                facedb.index([f])
            inputs = facedb.people_store.cluster_inputs()
            paths = dict(
                facedb.database.engine.connect()
                .exec_driver_sql("SELECT f.id, p.path FROM faces f JOIN photos p ON p.id = f.photo_id")
                .all()
            )
            runs.append((inputs, paths))
            facedb.close()

        base = ClusterParams.from_settings(Settings.load())
        print(
            f"{len(runs[0][0].face_ids)} faces: {len(truth_by_name)} labelled photos of "
            f"{len(set(truth_by_name.values()))} people, the rest strangers from group photos"
        )
        print(" eps  min_size  B3-P    B3-R    B3-F    pair-P  pair-R  people  same-both-orders")
        table = []
        for eps in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0):
            for min_size in (2, 3):
                params = replace(base, eps=eps, min_size=min_size)
                results = []
                partitions = []
                for inputs, paths in runs:
                    plan = plan_clustering(inputs, params)
                    clusters = partition_of(plan, inputs, paths)
                    truth = {
                        f: truth_by_name[Path(paths[f]).name] for f in clusters if Path(paths[f]).name in truth_by_name
                    }
                    results.append(scores(truth, clusters))
                    groups_by_path = {}
                    for f, c in clusters.items():
                        groups_by_path.setdefault(c, set()).add(paths[f])
                    partitions.append({frozenset(g) for g in groups_by_path.values()})
                r = results[0]
                same = partitions[0] == partitions[1]
                table.append({"eps": eps, "min_size": min_size, **r, "same_partition_both_orders": same})
                print(
                    f"{eps:4.2f}  {min_size:8d}  {r['bcubed_precision']:.3f}   {r['bcubed_recall']:.3f}   "
                    f"{r['bcubed_f']:.3f}   {r['pairwise_precision']:.3f}   {r['pairwise_recall']:.3f}   "
                    f"{r['people_found']}/{r['people_true']}     {same}"
                )
        print(json.dumps(table))


if __name__ == "__main__":
    main()
