"""The ONNX conversion's peak memory and time, model by model (not a test).

    python benchmarks/conversion_memory.py [--baseline REV] [--python PATH ...] [--runs 2]

Each conversion is the child process facedb runs on first use (`python -m
facedb.vision.onnx_conversion CACHE [MODEL]`), into a new cache holding only the pinned
weights, measured from outside: wall seconds and peak RSS (`os.wait4`). With `--baseline`,
the code of that git revision (a temporary worktree) is measured too, in turn with this
checkout's, so that both see the same machine. `--python` adds interpreters (each needs
facedb's dependencies installed): the peak depends on the interpreter, not only on the code
(Debian's Python 3.11.2 held 500 MB more than a source-built 3.11.7 before the conversion
gave memory back between its steps). Prints a table and one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedb.config import Settings  # noqa: E402
from facedb.vision.weights import FROZEN_GRAPH_MODEL, embedder_specs, embedder_weights, weights_path  # noqa: E402


def convert(python: str, tree: Path, weights: Path, model: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one conversion of `model` by the code in `tree`."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryFile() as error:
        target = weights_path(Path(cache), model)
        target.parent.mkdir(parents=True)
        shutil.copy(weights, target)
        arguments = [cache] if model == FROZEN_GRAPH_MODEL else [cache, model]
        started = time.perf_counter()
        child = subprocess.Popen(
            [python, "-m", "facedb.vision.onnx_conversion", *arguments],
            cwd=tree,  # the tree's facedb comes first on the child's path
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=subprocess.DEVNULL,
            stderr=error,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            error.seek(0)
            raise SystemExit(f"{tree}: converting {model} failed: {error.read().decode(errors='replace')[-500:]}")
        return wall, usage.ru_maxrss / 1024


def interpreter(python: str) -> str:
    done = subprocess.run([python, "-c", "import platform; print(platform.python_version())"], capture_output=True)
    return f"{python} ({done.stdout.decode().strip() or 'unknown'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to measure too, in turn with this checkout")
    parser.add_argument("--python", action="append", default=[], help="another interpreter to run the conversion")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    cache = Settings.load().model_cache  # FACEDB_MODEL_CACHE, as facedb reads it
    weights = {model: embedder_weights(cache, model) for model in embedder_specs()}  # fetched once, checked
    pythons = [sys.executable, *args.python]
    trees = {"this checkout": ROOT}
    scratch = None
    if args.baseline:
        scratch = Path(tempfile.mkdtemp())
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(scratch), args.baseline], check=True
        )
        trees = {args.baseline: scratch, **trees}
    labels = {python: interpreter(python) for python in pythons}
    rows = []
    try:
        for run in range(args.runs):
            for model, path in weights.items():
                for label, tree in trees.items():
                    for python in pythons:
                        wall, peak = convert(python, tree, path, model)
                        rows.append({"run": run + 1, "model": model, "code": label, "python": python,
                                     "seconds": round(wall, 1), "peak_mib": round(peak)})  # fmt: skip
                        print(f"{run + 1}  {model:16s}  {label:14s}  {labels[python]:45s}  "
                              f"{wall:6.1f} s  {peak:7.0f} MiB", flush=True)  # fmt: skip
    finally:
        if scratch is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(scratch)], check=False)
    print(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), "conversions": rows}))


if __name__ == "__main__":
    main()
