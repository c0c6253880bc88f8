"""Whole processes from a cold start, each against the FaceNet tutorial's way (not a test).

    python benchmarks/cold_start.py [--runs 3] [--archive-photos 120]

Every figure is a whole process (start-up, model load, database start, work and exit),
timed from outside with its peak RSS (`os.wait4`), the median of `--runs` runs taken in
turn with the reference, and the ratio of the medians:

- `facedb who PHOTO` (ONNX Runtime, then TensorFlow) against the tutorial's compare.py of
  the photo (benchmarks/tutorial_compare.py), in a home with one person enrolled;
- `facedb index NEW_PHOTO` (bytes never indexed before) against the same;
- `facedb index FOLDER` of archive-sized photos (2000 px long side) into a new home, against
  the tutorial's pipeline over the same photos (compare.py over all of them).

The archive folder is made from the registry photos taken at 900 px or more (see archive()).
Prints a table and one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedb import samples as photos  # noqa: E402

FACEDB = [sys.executable, "-m", "facedb"]
TUTORIAL = [sys.executable, str(ROOT / "benchmarks" / "tutorial_compare.py")]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(
            f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:] if process.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024


def paired(a, b, runs: int, warm_up: bool = True) -> dict:
    """a and b are functions giving (wall, rss); run in turn, after one warm-up each."""
    if warm_up:
        a(), b()
    walls_a, walls_b, rss_a, rss_b = [], [], [], []
    for _ in range(runs):
        wa, ra = a()
        wb, rb = b()
        walls_a.append(wa), rss_a.append(ra), walls_b.append(wb), rss_b.append(rb)
    median_a, median_b = statistics.median(walls_a), statistics.median(walls_b)
    return {
        "seconds": round(median_a, 2),
        "peak_rss_mb": round(max(rss_a)),
        "tutorial_seconds": round(median_b, 2),
        "tutorial_peak_rss_mb": round(max(rss_b)),
        "ratio": round(median_a / median_b, 3),
        "runs": runs,
    }


def archive(folder: Path, count: int) -> list[Path]:
    """Archive-sized photos from the registry photos taken at 900 px or more (17 of them; the
    small crops and stills, blown up, would be blurry faces filling the frame, which no
    archive holds): each at a 2000 px long side, mirrored, and 85% crops at its four corners
    and centre (mirrored too), each resized to 2000 px again."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [p for p in photos.photos_with_faces() if max(Image.open(p).size) >= 900]
    plan = []  # (name, source, crop, mirrored): whole photos first, then their crops
    for source in sources:
        w, h = ImageOps.exif_transpose(Image.open(source)).size
        cw, ch = round(w * 0.85), round(h * 0.85)
        crops = {
            "": (0, 0, w, h),
            "-nw": (0, 0, cw, ch),
            "-ne": (w - cw, 0, w, ch),
            "-sw": (0, h - ch, cw, h),
            "-se": (w - cw, h - ch, w, h),
            "-centre": ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch),
        }
        for suffix, box in crops.items():
            for mirrored in (False, True) if suffix in ("", "-centre") else (False,):
                name = f"{source.parent.name}-{source.stem}{suffix}{'-mirrored' if mirrored else ''}.jpg"
                plan.append((name, source, box, mirrored))
    plan.sort(key=lambda item: (item[0].count("-"), item[0]))
    made = []
    for name, source, box, mirrored in plan[:count]:
        target = folder / name
        if not target.exists():
            part = ImageOps.exif_transpose(Image.open(source)).convert("RGB").crop(box)
            scale = 2000 / max(part.size)
            part = part.resize((round(part.width * scale), round(part.height * scale)), Image.Resampling.LANCZOS)
            (ImageOps.mirror(part) if mirrored else part).save(target, "JPEG", quality=92)
        made.append(target)
    return made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--archive-photos", type=int, default=120)
    args = parser.parse_args()
    query = str(photos.path("face_recognition/obama2.jpg"))
    group = photos.path("face_api/sample1.jpg")
    results = {}
    with tempfile.TemporaryDirectory(prefix="facedb-cold-") as scratch:
        scratch_path = Path(scratch)
        home = scratch_path / "home"
        env = {**os.environ, "FACEDB_HOME": str(home)}
        subprocess.run(
            [*FACEDB, "enroll", "Barack Obama", str(photos.path("face_recognition/obama.jpg"))],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        tutorial_one = lambda photo: lambda: timed([*TUTORIAL, str(photo)], env)  # noqa: E731
        for runtime in ("onnxruntime", "tensorflow"):
            on = {**env, "FACEDB_RUNTIME": runtime}
            results[f"who_{runtime}"] = paired(
                lambda on=on: timed([*FACEDB, "who", query], on), tutorial_one(query), args.runs
            )

            def index_new(on=on) -> tuple[float, float]:
                fresh = scratch_path / f"new-{time.monotonic_ns()}.jpg"
                fresh.write_bytes(group.read_bytes() + os.urandom(16))  # new bytes, the same pixels
                return timed([*FACEDB, "index", "-q", str(fresh)], on)

            results[f"index_one_photo_{runtime}"] = paired(index_new, tutorial_one(group), args.runs)
        folder = archive(scratch_path / "archive", args.archive_photos)

        def index_folder() -> tuple[float, float]:
            fresh_home = scratch_path / f"home-{time.monotonic_ns()}"
            try:
                return timed([*FACEDB, "index", "-q", str(folder[0].parent)], {**env, "FACEDB_HOME": str(fresh_home)})
            finally:
                shutil.rmtree(fresh_home, ignore_errors=True)

        for path in folder:  # into the page cache for both
            path.read_bytes()
        results["index_archive_folder"] = paired(
            index_folder, lambda: timed([*TUTORIAL, *map(str, folder)], env), max(1, args.runs - 2), warm_up=False
        ) | {"photos": len(folder)}
    for name, r in results.items():
        print(
            f"{name:32} {r['seconds']:7.2f} s {r['peak_rss_mb']:6} MiB   tutorial {r['tutorial_seconds']:7.2f} s "
            f"{r['tutorial_peak_rss_mb']:6} MiB   ratio {r['ratio']:.3f} ({r['runs']} runs)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
