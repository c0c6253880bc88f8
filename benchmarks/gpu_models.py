"""How facedb's two networks behave on a GPU: throughput against batch size.

Not part of facedb, its tests or CI (they need no GPU). This answers one planning question,
how batch sizes would change with a GPU, on a CUDA machine where TensorFlow cannot be
installed: it runs the same architectures in PyTorch from `facenet-pytorch` 2.6.0 (its
Inception-ResNet-v1 with a 512-d embedding, FaceNet's architecture, untrained weights, which
do not change the arithmetic; and its MTCNN with the published P/R/O-Net weights that ship in
its wheel). Throughput is measured after warm-up with the GPU synchronised, and printed as a
table and one JSON line.

    python benchmarks/gpu_models.py PHOTO_FOLDER      # needs torch (CUDA) and facenet-pytorch
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN, InceptionResnetV1
from PIL import Image


def timed(run, repeats: int) -> float:
    run()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def embedder_throughput(device: str) -> list[dict]:
    model = InceptionResnetV1(classify=False, num_classes=None).eval().to(device)
    rows = []
    for dtype in (torch.float32, torch.float16):
        for batch in (1, 4, 16, 64, 256, 1024):
            faces = torch.randn(batch, 3, 160, 160, device=device)
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                seconds = timed(lambda: model(faces), repeats=max(3, 256 // batch))  # noqa: B023 - called at once
            rows.append(
                {
                    "model": "facenet",
                    "dtype": str(dtype).removeprefix("torch."),
                    "batch": batch,
                    "per_s": round(batch / seconds, 1),
                    "ms_per_call": round(seconds * 1e3, 2),
                }
            )
    return rows


def detector_throughput(folder: Path, device: str) -> list[dict]:
    """MTCNN over real photos downscaled to 640 px, one at a time and in batches of one size."""
    detector = MTCNN(keep_all=True, device=device, min_face_size=20)
    photos = []
    for path in sorted(folder.iterdir()):
        image = Image.open(path).convert("RGB")
        image.thumbnail((640, 640))
        photos.append(image)
    rows = []
    seconds = timed(lambda: [detector.detect(p) for p in photos], repeats=3)
    faces = sum(0 if boxes is None else len(boxes) for boxes, _ in (detector.detect(p) for p in photos))
    rows.append(
        {"model": "mtcnn", "batch": 1, "photos": len(photos), "faces": faces, "per_s": round(len(photos) / seconds, 1)}
    )
    same_size = [np.asarray(p.resize((640, 480))) for p in photos]
    for batch in (8, 42):
        groups = [same_size[i : i + batch] for i in range(0, len(same_size), batch)]
        seconds = timed(lambda: [detector.detect(g) for g in groups], repeats=3)  # noqa: B023 - called at once
        rows.append(
            {
                "model": "mtcnn",
                "batch": batch,
                "photos": len(same_size),
                "per_s": round(len(same_size) / seconds, 1),
                "note": "photos stretched to 640x480 so that they stack",
            }
        )
    return rows


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_models.py: no CUDA device")
    device = "cuda"
    rows = embedder_throughput(device) + detector_throughput(Path(sys.argv[1]), device)
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    print(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}))


if __name__ == "__main__":
    main()
