"""`facedb bench ingest PATH --ray ADDRESS`: indexing on Ray against a local run on the same
photos, each into a fresh embedded database, the workers' busy time per stage, and what one
PostgreSQL takes through facedb's batch writes (synthetic faces, no models)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..api import FaceDB
from ..config import Settings
from ..faces import Detection, Face
from ..files.images import PhotoMeta
from ..records import FileStat, Indexed
from ..vision.weights import embedder_spec


def run(files: list[str], settings: Settings, address: str, say: Callable[[str], None] = print) -> dict:
    for path in files:  # both runs then read from the page cache alike
        Path(path).read_bytes()
    runs: dict[str, dict] = {}
    for name, ray in (("local", None), ("ray", address)):
        with tempfile.TemporaryDirectory(prefix="facedb-bench-") as home:
            facedb = FaceDB(replace(settings, home=Path(home), database_url=None, ray_address=ray))
            facedb.status()  # the database starts outside the clock
            say(f"facedb index {'on Ray at ' + address if ray else 'locally'} ...")
            summary = facedb.index(files, ray=ray)
            runs[name] = {
                "seconds": round(summary.seconds, 2),
                "model_load_s": round(summary.model_load_seconds, 2),
                "photos_per_s": round(len(files) / summary.seconds, 3),
                "faces": summary.faces,
                "failed": summary.failed,
                "stage_busy_s": summary.stage_seconds,
                "workers": len(summary.ray_workers),
            }
            if ray is None:
                say("writes alone: synthetic faces through the batch writes ...")
                runs["write_capacity"] = write_capacity(facedb, settings.write_batch_photos)
            facedb.close()
    write = runs.pop("write_capacity")
    return {
        "photos": len(files),
        "local": runs["local"],
        "ray": runs["ray"],
        "ray_over_local": round(runs["ray"]["seconds"] / runs["local"]["seconds"], 3),
        "write_capacity": write,
    }


def write_capacity(facedb: FaceDB, batch_photos: int, photos: int = 1024, faces_per_photo: int = 3) -> dict:
    """Photos with faces (random unit vectors of the model's dimension, a 2 KB thumbnail) written
    as indexing writes them: a transaction per batch of `batch_photos`."""
    rng = np.random.default_rng(18)
    dimension = int(embedder_spec(facedb.model)["dimension"])
    thumbnail = bytes(rng.integers(0, 256, 2048, dtype=np.uint8))
    landmarks = ((1.0, 1.0), (2.0, 1.0), (1.5, 1.5), (1.0, 2.0), (2.0, 2.0))
    model_id = facedb.embedding_model_id
    seconds = 0.0
    for start in range(0, photos, batch_photos):
        batch = []
        for n in range(start, min(photos, start + batch_photos)):
            faces = []
            for _ in range(faces_per_photo):
                vector = rng.normal(size=dimension).astype(np.float32)
                face = Face(Detection((10.0, 10.0, 50.0, 60.0), landmarks, 0.99), np.zeros((0, 0, 3), np.uint8))
                face.thumbnail, face.embedding = thumbnail, vector / np.linalg.norm(vector)
                faces.append(face)
            meta = PhotoMeta(width=800, height=600, format="JPEG")
            batch.append(Indexed(FileStat(f"/synthetic/{n}.jpg", 1, 1, f"{n:064x}"), meta, faces))
        began = time.perf_counter()
        facedb.store.write(batch, model_id, facedb.model)
        seconds += time.perf_counter() - began
    return {
        "photos": photos,
        "faces": photos * faces_per_photo,
        "batch_photos": batch_photos,
        "seconds": round(seconds, 2),
        "faces_per_s": round(photos * faces_per_photo / seconds),
        "photos_per_s": round(photos / seconds),
    }


def table(result: dict) -> str:
    local, ray, write = result["local"], result["ray"], result["write_capacity"]
    return "\n".join(
        [
            f"{result['photos']} photos",
            f"{'':24}{'seconds':>9}{'photos/s':>10}{'faces':>7}{'workers':>9}",
            f"{'local':24}{local['seconds']:>9.1f}{local['photos_per_s']:>10.3f}{local['faces']:>7}{'-':>9}",
            f"{'ray':24}{ray['seconds']:>9.1f}{ray['photos_per_s']:>10.3f}{ray['faces']:>7}{ray['workers']:>9}",
            f"ray / local time: {result['ray_over_local']:.3f} (models loaded in {ray['model_load_s']} s on the "
            f"workers and {local['model_load_s']} s locally, not counted)",
            "workers' busy time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in ray["stage_busy_s"].items()),
            f"one PostgreSQL through the batch writes: {write['faces_per_s']} faces/s ({write['photos_per_s']} "
            f"photos/s, {write['faces']} faces in transactions of {write['batch_photos']} photos)",
        ]
    )
