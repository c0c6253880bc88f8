"""One settings object: explicit values (flags) > environment (FACEDB_*, DATABASE_URL) > defaults."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .errors import SettingError

# Distances belong to the model that measures them: each model's default threshold, clustering
# eps, proposal threshold and same-face distances are in its manifest entry (models/manifest.json,
# vision/weights.py's ModelDistances); the settings below override them for every model.
DEFAULT_CLUSTER_MIN_SAMPLES = 2
DEFAULT_CLUSTER_MIN_SIZE = 3

RUNTIMES = ("onnxruntime", "tensorflow")
# The search index's kinds (facedb/db/sql.py says what each costs); "auto" chooses by size.
SEARCH_INDEX_KINDS = ("halfvec", "binary")
SEARCH_INDEX_CHOICES = ("auto", *SEARCH_INDEX_KINDS)


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("facedb"))


def _default_model_cache() -> Path:
    return Path(platformdirs.user_cache_dir("facedb")) / "models"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_default_home)
    database_url: str | None = None
    # Streaming replicas of that database (comma-separated URLs): who, search and listings
    # read from one that has replayed this process's writes, else from the primary.
    read_urls: str = ""
    model_cache: Path = field(default_factory=_default_model_cache)
    # The embedding model (a key of models/manifest.json, `facedb models`); None: the database's
    # default (`facedb models default NAME`), which a new database takes from the manifest.
    model: str | None = None
    # What runs the models: "onnxruntime" (the networks converted once from the pinned
    # TensorFlow models; starts in about a second) or "tensorflow" (the models as published).
    runtime: str = "onnxruntime"
    # Detection runs on a copy whose longest side is at most this; crops come from the original.
    detect_max_side: int = 640
    min_face_size: int = 20
    # MTCNN's last-stage (O-Net) threshold: 0.7 keeps the faces of FaceNet's own alignment (0.7)
    # and of mtcnn 1.0's detect_faces (0.8); false faces measured with `facedb bench detect
    # --no-faces` (docs/accuracy.md).
    min_face_score: float = 0.70
    # FaceNet runs near its best from 4 faces a batch (CPU: 38-46 faces/s at 4-64); 16 leaves fewer
    # faces to embed after the last photo of a batch is detected than 32 (42 photos: 5.44 s vs 5.66 s).
    embed_batch_size: int = 16
    face_margin: float = 0.2
    # None: the threshold `facedb calibrate` stored for the model, else the model's default (models/manifest.json).
    threshold: float | None = None
    max_pixels: int = 120_000_000
    # Photos with more pixels are decoded smaller, to this many (a JPEG while decoding, at 1/2,
    # 1/4 or 1/8): memory for a 100 MP photo is then that of a 50 MP one. Faces are still found
    # (detection looks at 12 MP at most) but a small face's crop has fewer pixels to come from
    # (docs/indexing.md); 0: every photo at its full size.
    max_decoded_pixels: int = 50_000_000
    read_workers: int = 2
    # Photos detected at once (the threads share MTCNN's graphs); two beat one on 2 cores (3.5 s vs 4.2 s).
    detect_workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    write_batch_photos: int = 32
    # Each model's search index: "halfvec" (HNSW at half precision), "binary" (HNSW on one bit a
    # dimension, its candidates re-ranked on the stored embeddings: a quarter of the memory), or
    # "auto": binary from 2,000,000 faces of a model on. `facedb check --fix` builds the one chosen.
    search_index: str = "auto"
    # Names in the photos' XMP face tags (MWG and Microsoft regions, embedded or in sidecars,
    # as digiKam, Lightroom and others write them) confirm the detected faces they overlap.
    read_face_tags: bool = True

    # `facedb index --ray`: the Ray cluster that does the model work. None: none (a local run);
    # "local": start Ray on this machine; "auto": join the cluster this machine belongs to; or
    # the head's address (host:port).
    ray_address: str | None = None
    # Ray actors (each loads the models once and takes one CPU); None: one per CPU of the cluster.
    ray_actors: int | None = None

    # The REST service: folders it may index and serve photos from (os.pathsep-separated),
    # and the largest upload it takes.
    serve_roots: str = ""
    max_upload_bytes: int = 20 * 2**20
    # A JSON body is at most this (1,000 paths to index fit); larger ones get 413 unread.
    max_json_bytes: int = 2**20
    # The pixels of all images in one request together (each is also under max_pixels): one
    # request's decoding must not hold a model worker for long (4 x 120 MP took 15 s).
    max_request_pixels: int = 240_000_000
    # Requests that decode, detect and embed run in this many threads of their own, and at most
    # this many more wait; beyond that the answer is 503 with Retry-After, never a longer queue.
    # One per core: on 2 cores two workers answered 12.5 who/s against 8.8 with one (ONNX
    # Runtime; TensorFlow 10.8 against 8.7), docs/service.md.
    serve_model_workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    serve_waiting_requests: int = 8
    # Slow clients (slowloris): a request's headers must arrive within this many seconds, and
    # its body must start within them and then come at 500 bytes a second or more (408
    # otherwise); at most serve_max_connections are open at once (503 beyond).
    serve_client_seconds: float = 20.0
    serve_max_connections: int = 512
    # A running service asks the database for its default model this often and takes up a new
    # one (`facedb models default`) once its weights are loaded; 0: never.
    serve_model_check_seconds: float = 10.0
    # `serve --watch` (FACEDB_SERVE_WATCH=1): the service keeps its roots indexed as photos
    # arrive, change, move or go, as `index --watch` does, with these two settings of both.
    serve_watch: bool = False
    watch_settle_seconds: float = 2.0
    watch_rescan_minutes: float = 10.0
    # None: the model's (its manifest entry)
    cluster_eps: float | None = None
    cluster_min_samples: int = DEFAULT_CLUSTER_MIN_SAMPLES
    cluster_min_size: int = DEFAULT_CLUSTER_MIN_SIZE
    # None: the model's, or as much stricter than a calibrated who threshold as the model's is
    # than its default threshold.
    propose_threshold: float | None = None

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @classmethod
    def load(cls, **explicit: object) -> Settings:
        """Build settings; `explicit` values win, None means 'not given'."""
        values: dict[str, Any] = {}
        env = os.environ
        if env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, annotation in types.items():
            raw = env.get("FACEDB_" + name.upper())
            if raw:
                values[name] = _parse(annotation, raw, name)
        for name, value in explicit.items():
            if name not in types:
                raise TypeError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = _parse(types[name], value, name) if isinstance(value, str) else value
        for name in ("home", "model_cache"):
            if name in values:
                values[name] = Path(values[name]).expanduser()
        if values.get("runtime", "onnxruntime") not in RUNTIMES:
            raise SettingError(
                f"setting runtime (FACEDB_RUNTIME): {values['runtime']!r} is not one of {', '.join(RUNTIMES)}"
            )
        if values.get("search_index", "auto") not in SEARCH_INDEX_CHOICES:
            raise SettingError(
                f"setting search_index (FACEDB_SEARCH_INDEX): {values['search_index']!r} is not one of "
                + ", ".join(SEARCH_INDEX_CHOICES)
            )
        return cls(**values)


def _parse(annotation: object, raw: str, name: str) -> object:
    kind = str(annotation).removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingError(f"setting {name} (FACEDB_{name.upper()}): {raw!r} is not a number") from None
    if kind == "Path":
        return Path(raw).expanduser()
    if kind == "bool":
        word = raw.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"setting {name} (FACEDB_{name.upper()}): {raw!r} is not yes or no (1/0, true/false)")
    return raw
