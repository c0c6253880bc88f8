"""Face detection behind a small interface. MTCNN (mtcnn 1.0.0, TensorFlow) is the detector."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
from PIL import Image

from .faces import Detection
from .pnet import MIN_LEVEL_SIDE, PyramidPNet


class Detector(Protocol):
    name: str

    def load(self) -> object:
        """Load the weights now (otherwise the first detect does)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


class MtcnnDetector:
    """MTCNN on a downscaled copy of big photos; boxes come back in original-image pixels.

    Its three networks run as TensorFlow graphs that any number of threads may call at once;
    up to `workers` photos are detected at the same time (MTCNN's many small convolutions do
    not keep two cores busy: the 42 test photos took 3.5 s with two detecting threads against
    4.2 s with one, 2 cores)."""

    name = "mtcnn-1.0.0"

    def __init__(self, max_side: int = 1280, min_face_size: int = 20, min_score: float = 0.9,
                 workers: int = 1) -> None:
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.workers = max(1, workers)
        self._slots = threading.Semaphore(self.workers)
        self._lock = threading.Lock()
        self._stages: tuple | None = None

    def load(self) -> tuple:
        with self._lock:
            if self._stages is None:
                self._stages = self._build()
        return self._stages

    @property
    def loaded(self) -> bool:
        return self._stages is not None

    def _build(self) -> tuple:
        from .weights import verify_detector_weights
        from . import tfruntime

        verify_detector_weights()
        tfruntime.configure()
        import tensorflow as tf
        from mtcnn import MTCNN

        model = MTCNN()
        # mtcnn runs its networks eagerly, layer by layer from Python; as graphs (one trace
        # each, any input size) they gave the same boxes 2.1-2.4x faster on 640 px photos.
        for stage, size in zip(model.stages[1:], (24, 48)):
            stage._model = tf.function(stage._model, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            stage._model(tf.zeros([1, size, size, 3]))  # trace now, not in the first photo
        pnet = PyramidPNet(model.stages[0]._model)
        pnet.proposals(np.zeros((48, 48, 3), np.uint8), MIN_LEVEL_SIDE)
        return pnet, model.stages[1], model.stages[2]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR))
        min_face = max(MIN_LEVEL_SIDE, int(self.min_face_size * scale))
        if min(small.shape[:2]) < min_face:
            return []
        stages = self._stages or self.load()
        with self._slots:
            found = _mtcnn_faces(small, min_face, *stages)
        detections = [d for d in (detection_from_mtcnn(item, scale) for item in found)
                      if d.score >= self.min_score and min(d.box[2], d.box[3]) >= self.min_face_size]
        detections.sort(key=lambda d: (d.box[0], d.box[1]))
        return detections


def _mtcnn_faces(rgb: np.ndarray, min_face: int, pnet, rnet, onet) -> list[dict]:
    """mtcnn's detect_faces for one image, with facedb's P-Net stage (pnet.py) in front of
    mtcnn's own R-Net and O-Net stages; the same JSON out."""
    import tensorflow as tf
    from mtcnn.utils.bboxes import limit_bboxes, to_json

    boxes = pnet.proposals(rgb, min_face)
    if len(boxes) == 0:
        return []
    normalized = tf.constant(((rgb.astype(np.float32) - 127.5) / 128)[None])
    for stage in (rnet, onet):
        boxes = stage(images_normalized=normalized, bboxes_batch=boxes)
        if len(boxes) == 0:
            return []
    boxes = limit_bboxes(boxes, images_shapes=np.asarray([rgb.shape]), limit_landmarks=False)
    return to_json(boxes, images_count=1, input_as_width_height=False, output_as_width_height=True)[0]


_LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def detection_from_mtcnn(item: dict, scale: float = 1.0) -> Detection:
    """One face of mtcnn's JSON output, in the pixels of an image `1 / scale` times the size."""
    box = tuple(float(v) / scale for v in item["box"])
    landmarks = tuple((float(item["keypoints"][k][0]) / scale, float(item["keypoints"][k][1]) / scale)
                      for k in _LANDMARKS)
    return Detection(box=box, landmarks=landmarks, score=float(item["confidence"]))  # type: ignore[arg-type]
