"""Face detection behind a small interface. MTCNN (mtcnn 1.0.0, TensorFlow) is the detector."""

from __future__ import annotations

import threading
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
    """MTCNN on a downscaled copy of big photos; boxes come back in original-image pixels."""

    name = "mtcnn-1.0.0"

    def __init__(self, max_side: int = 1280, min_face_size: int = 20, min_score: float = 0.9) -> None:
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self._model = None
        self._lock = threading.Lock()
        # One detection at a time: requests served in threads share this model.
        self._run_lock = threading.Lock()

    def load(self):
        with self._lock:
            if self._model is None:
                from .weights import verify_detector_weights
                from . import tfruntime

                verify_detector_weights()
                tfruntime.configure()
                from mtcnn import MTCNN

                self._model = MTCNN()
        return self._model

    def sharing_model(self, max_side: int, min_face_size: int) -> "MtcnnDetector":
        """Another detector with other sizes and the same loaded weights (for comparisons)."""
        other = MtcnnDetector(max_side, min_face_size, self.min_score)
        other._model = self.load()
        other._run_lock = self._run_lock
        return other

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        model = self.load()
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR))
        min_face = max(_MTCNN_MIN_FACE, int(self.min_face_size * scale))
        if min(small.shape[:2]) < min_face:
            return []
        with self._run_lock:
            found = model.detect_faces(small, min_face_size=min_face)
        detections = []
        for item in found:
            score = float(item["confidence"])
            x, y, w, h = (float(v) / scale for v in item["box"])
            if score < self.min_score or min(w, h) < self.min_face_size:
                continue
            keys = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
            landmarks = tuple((float(item["keypoints"][k][0]) / scale, float(item["keypoints"][k][1]) / scale) for k in keys)
            detections.append(Detection(box=(x, y, w, h), landmarks=landmarks, score=score))  # type: ignore[arg-type]
        detections.sort(key=lambda d: (d.box[0], d.box[1]))
        return detections
