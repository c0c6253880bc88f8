"""Clustering at scale on synthetic *clustered* embeddings (many faces per person around a
centre, spread like real FaceNet faces), with bounded memory. Prints time, peak memory and
quality against the known people. Run: python benchmarks/cluster_scale.py [--faces 100000]"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from facedb.bench import SyntheticFaces
from facedb.people.clustering import ClusterParams, FaceSet, cluster, nearest_neighbours


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--per-person", type=int, default=10)
    args = parser.parse_args()
    people = args.faces // args.per_person
    archive = SyntheticFaces(people, args.per_person)
    vectors = archive.all()
    n = len(vectors)
    truth = archive.person_of(np.arange(n))
    ids = np.arange(n, dtype=np.int64)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    started = time.perf_counter()
    params = ClusterParams()
    neighbours = nearest_neighbours(vectors, params.k, params.eps)
    knn_s = time.perf_counter() - started
    started = time.perf_counter()
    labels = cluster(FaceSet(ids, ids, vectors, np.full(n, -1, np.int64)), params, neighbours)
    cluster_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    found = labels[labels >= 0]
    pure = sum(len(set(truth[labels == label])) == 1 for label in np.unique(found))
    whole = sum(len(set(labels[truth == person])) == 1 and labels[truth == person][0] >= 0 for person in range(people))
    result = {
        "faces": n,
        "people": people,
        "knn_s": round(knn_s, 1),
        "cluster_s": round(cluster_s, 1),
        "faces_per_s": round(n / (knn_s + cluster_s)),
        "people_found": int(len(np.unique(found))),
        "pure_clusters": int(pure),
        "people_found_whole": int(whole),
        "unclustered_faces": int((labels < 0).sum()),
        "embeddings_mb": round(vectors.nbytes / 2**20),
        "peak_rss_mb": round(peak),
        "peak_rss_before_clustering_mb": round(rss_before),
        "all_pairs_matrix_would_be_gb": round(n * n * 4 / 2**30, 1),
    }
    print(
        f"{n} faces of {people} synthetic people: neighbours {result['knn_s']} s + grouping {result['cluster_s']} s "
        f"= {result['faces_per_s']} faces/s; {result['people_found']} people found, {result['pure_clusters']} pure, "
        f"{result['people_found_whole']} whole; peak RSS {result['peak_rss_mb']} MB "
        f"(an all-pairs matrix would need {result['all_pairs_matrix_would_be_gb']} GB)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
