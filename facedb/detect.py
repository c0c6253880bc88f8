"""Face detection behind a small interface. MTCNN (mtcnn 1.0.0, TensorFlow) is the detector."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np
from PIL import Image

from .faces import Detection

# MTCNN's image pyramid cannot start below 12 px.
_MTCNN_MIN_FACE = 12


class Detector(Protocol):
    name: str

    def load(self) -> object:
        """Load the weights now (otherwise the first detect does)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


class MtcnnDetector:
    """MTCNN on a downscaled copy of big photos; boxes come back in original-image pixels.

    Up to `workers` photos are detected at once, each by its own copy of the small (2 MB)
    networks: MTCNN's many small convolutions keep one core busy far better than two, and two
    detecting threads did 12 photos in 4.9 s against 5.8 s for one (2 cores)."""

    name = "mtcnn-1.0.0"

    def __init__(self, max_side: int = 1280, min_face_size: int = 20, min_score: float = 0.9,
                 workers: int = 1) -> None:
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.workers = max(1, workers)
        self._slots = threading.Semaphore(self.workers)
        self._idle: list = []
        self._lock = threading.Lock()
        self._loaded = False

    def load(self):
        with self._borrowed() as model:
            return model

    @property
    def loaded(self) -> bool:
        return self._loaded

    @contextmanager
    def _borrowed(self) -> Iterator:
        with self._slots:
            with self._lock:
                model = self._idle.pop() if self._idle else None
            if model is None:
                model = self._new_model()
            try:
                yield model
            finally:
                with self._lock:
                    self._idle.append(model)

    def _new_model(self):
        from .weights import verify_detector_weights
        from . import tfruntime

        verify_detector_weights()
        tfruntime.configure()
        import tensorflow as tf
        from mtcnn import MTCNN

        model = MTCNN()
        # mtcnn runs its three networks eagerly, layer by layer from Python; as graphs (one
        # trace each, any image size) they gave the same boxes 2.1-2.4x faster on 640 px photos.
        for stage, shape in zip(model.stages, ([None, None, None, 3], [None, 24, 24, 3], [None, 48, 48, 3])):
            stage._model = tf.function(stage._model, input_signature=[tf.TensorSpec(shape, tf.float32)])
        self._loaded = True
        return model

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR))
        min_face = max(_MTCNN_MIN_FACE, int(self.min_face_size * scale))
        if min(small.shape[:2]) < min_face:
            return []
        with self._borrowed() as model:
            found = model.detect_faces(small, min_face_size=min_face)
        detections = [d for d in (detection_from_mtcnn(item, scale) for item in found)
                      if d.score >= self.min_score and min(d.box[2], d.box[3]) >= self.min_face_size]
        detections.sort(key=lambda d: (d.box[0], d.box[1]))
        return detections


_LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def detection_from_mtcnn(item: dict, scale: float = 1.0) -> Detection:
    """One face of mtcnn's JSON output, in the pixels of an image `1 / scale` times the size."""
    box = tuple(float(v) / scale for v in item["box"])
    landmarks = tuple((float(item["keypoints"][k][0]) / scale, float(item["keypoints"][k][1]) / scale)
                      for k in _LANDMARKS)
    return Detection(box=box, landmarks=landmarks, score=float(item["confidence"]))  # type: ignore[arg-type]
