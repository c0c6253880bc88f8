"""Face detection behind a small interface. MTCNN (mtcnn 1.0.0's networks) is the detector,
run on ONNX Runtime (onnx_runtime.py, mtcnn_stages.py) or on TensorFlow (mtcnn's own stages)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import RUNTIMES, Settings
from ..faces import Detection, box_intersection, box_iou
from ..files.images import PixelBudget, resized
from .onnx_runtime import runtime_version
from .pnet import MIN_LEVEL_SIDE, PyramidPNet

# O-Net's threshold. mtcnn 1.0's detect_faces keeps scores over 0.8, FaceNet's own alignment
# (align_dataset_mtcnn, the tutorial's) over 0.7: at 0.7 facedb keeps the faces of both.
MTCNN_SCORE = 0.7
# An input this large (a strip of a big photo's second look; a 640 px copy's levels are 5 MB)
# returns its memory after the call.
SHRINK_AFTER_BYTES = 8 << 20


class Mtcnn(Protocol):
    """mtcnn's detect_faces for one image on some runtime: its JSON (rounded boxes, landmarks,
    confidence) for faces of at least `min_face` px over O-Net's `face_threshold`."""

    def proposals(self, rgb: np.ndarray, min_face: int) -> np.ndarray: ...

    def faces(self, rgb: np.ndarray, min_face: int, face_threshold: float) -> list[dict]: ...


class Detector(Protocol):
    name: str
    runtime: str

    def load(self) -> object:
        """Load the weights now (otherwise the first detect does)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


@dataclass(frozen=True)
class DetectionPolicy:
    """When a photo detected on its downscaled copy is detected again at full resolution, and
    when a photo with no face is tried again inside a border.

    The copy finds no face smaller than `12 / scale` px of the original (P-Net's window), and
    scores faces from fewer pixels: a weak or small face on the copy, or none at all, sends the
    photo to full resolution, whose faces are then added to the copy's. MTCNN finds nothing in
    a tight crop (the face fills the frame): a grey border of `border` of the longer side gives
    it the context it was trained with."""

    confident: float = 0.95  # a face on the copy scored below this -> full resolution
    small_face_windows: float = 2.0  # a face on the copy smaller than this many P-Net windows -> full resolution
    # Memory: larger photos get their second look on a 12 MP copy, one photo at a time (with
    # P-Net's large levels in strips and R-Net in batches, a 12 MP look took 0.1-0.2 GB more).
    full_look_max_pixels: int = 12_000_000
    border: float = 0.3
    border_grey: int = 127


class MtcnnDetector:
    """MTCNN on a downscaled copy of big photos (and at full resolution where the copy may have
    missed faces, see DetectionPolicy); boxes come back in original-image pixels.

    Its three networks run as ONNX Runtime sessions or TensorFlow graphs that any number of
    threads may call at once; up to `workers` photos are detected at the same time (MTCNN's
    many small convolutions do not keep two cores busy: the 42 test photos took 3.5 s with two
    detecting threads against 4.2 s with one, 2 cores, on TensorFlow)."""

    name = "mtcnn-1.0.0"

    def __init__(
        self,
        max_side: int = 640,
        min_face_size: int = 20,
        min_score: float = MTCNN_SCORE,
        workers: int = 1,
        policy: DetectionPolicy | None = None,
        runtime: str = "onnxruntime",
        model_cache: Path | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        if runtime == "onnxruntime" and model_cache is None:
            raise ValueError("ONNX Runtime needs the model cache, where the converted networks are kept")
        self.runtime = runtime_version(runtime)
        self._runtime = runtime
        self.model_cache = model_cache
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.workers = max(1, workers)
        self.policy = policy or DetectionPolicy()
        self._slots = threading.Semaphore(self.workers)
        self._full_look = PixelBudget(self.policy.full_look_max_pixels)
        self._lock = threading.Lock()
        self._mtcnn: Mtcnn | None = None
        self.retries = {"full_resolution": 0, "border": 0}  # how often each second look was taken
        self._retries_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> MtcnnDetector:
        options: dict[str, Any] = dict(
            max_side=settings.detect_max_side,
            min_face_size=settings.min_face_size,
            min_score=settings.min_face_score,
            workers=settings.detect_workers,
            runtime=settings.runtime,
            model_cache=settings.model_cache,
        )
        return cls(**(options | changes))

    def load(self) -> Mtcnn:
        with self._lock:
            if self._mtcnn is None:
                self._mtcnn = self._onnxruntime() if self._runtime == "onnxruntime" else self._tensorflow()
        return self._mtcnn

    @property
    def loaded(self) -> bool:
        return self._mtcnn is not None

    def _onnxruntime(self) -> Mtcnn:
        from . import onnx_runtime
        from .mtcnn_stages import NumpyMtcnn

        assert self.model_cache is not None
        models = onnx_runtime.ensure(self.model_cache)

        def network(name: str, threads: int):
            session = onnx_runtime.new_session(models.path(name), threads)
            input_name = session.get_inputs()[0].name
            shrink = onnx_runtime.arena_shrinkage()
            # ONNX Runtime's arena keeps what the largest call needed (0.4 GB after a 12 MP
            # look): a large call gives it back; small ones reuse it (shrinking after every
            # call made detection 20% slower).
            return lambda x: session.run(None, {input_name: x}, shrink if x.nbytes >= SHRINK_AFTER_BYTES else None)

        # One thread a call: a photo's pyramid levels already run in two threads (mtcnn_stages),
        # and photos detected at once share the cores (two threads a call: no faster index).
        return NumpyMtcnn(network("pnet", 1), network("rnet", 1), network("onet", 1))

    def _tensorflow(self) -> Mtcnn:
        mtcnn = TensorflowMtcnn(*self.tensorflow_stages())
        mtcnn.proposals(np.zeros((48, 48, 3), np.uint8), MIN_LEVEL_SIDE)  # trace now, not in the first photo
        return mtcnn

    @staticmethod
    def tensorflow_stages() -> tuple[Any, Any, Any]:
        """facedb's P-Net, mtcnn's R-Net and O-Net stages, on TensorFlow; each stage's network
        as a graph (`.network`), as onnx_conversion converts them."""
        from . import tfruntime
        from .weights import verify_detector_weights

        verify_detector_weights()
        tfruntime.configure()
        import tensorflow as tf
        from mtcnn import MTCNN

        model = MTCNN()
        # mtcnn runs its networks eagerly, layer by layer from Python; as graphs (one trace
        # each, any input size) they gave the same boxes 2.1-2.4x faster on 640 px photos.
        for stage, size in zip(model.stages[1:], (24, 48)):
            graph = tf.function(stage._model, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            graph(tf.zeros([1, size, size, 3]))  # trace now, not in the first photo
            stage._model = _in_batches(graph)
            stage.network = graph
        return PyramidPNet(model.stages[0]._model), model.stages[1], model.stages[2]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        copy = _resized(rgb, scale)
        found = self._detect_scaled(copy, scale)
        if scale < 1.0 and self._copy_may_miss_faces(found, scale):
            self._count("full_resolution")
            full = min(1.0, (self.policy.full_look_max_pixels / (height * width)) ** 0.5)
            with self._full_look.holding(round(width * full) * round(height * full)):
                found = union(self._detect_scaled(_resized(rgb, full), full), found)
        if not found:
            self._count("border")
            found = self._detect_in_border(copy, scale, width, height)
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))

    def _count(self, retry: str) -> None:
        with self._retries_lock:
            self.retries[retry] += 1

    def _copy_may_miss_faces(self, found: list[Detection], scale: float) -> bool:
        small = self.policy.small_face_windows * max(MIN_LEVEL_SIDE, self.min_face_size * scale) / scale
        return not found or any(d.score < self.policy.confident or min(d.box[2:]) < small for d in found)

    def _detect_scaled(self, small: np.ndarray, scale: float) -> list[Detection]:
        """Faces in `small`, a copy of the photo at `scale`, in the photo's pixels."""
        min_face = max(MIN_LEVEL_SIDE, int(self.min_face_size * scale))
        if min(small.shape[:2]) < min_face:
            return []
        mtcnn = self._mtcnn or self.load()
        with self._slots:
            found = mtcnn.faces(small, min_face, self.min_score)
        # Boxes under the smallest face looked for come from box regression shrinking a window;
        # the two that mtcnn reports in the test photos are a necklace and playing cards.
        return [
            d
            for d in (detection_from_mtcnn(item, scale) for item in found)
            if d.score >= self.min_score and min(d.box[2:]) >= self.min_face_size
        ]

    def _detect_in_border(self, small: np.ndarray, scale: float, width: int, height: int) -> list[Detection]:
        """The photo's copy at `scale` inside a grey border; boxes and landmarks shifted back and
        clipped to the width x height photo."""
        pad = max(1, round(self.policy.border * max(small.shape[:2])))
        framed = np.pad(small, ((pad, pad), (pad, pad), (0, 0)), constant_values=self.policy.border_grey)
        faces = []
        for d in self._detect_scaled(framed, 1.0):
            x, y, w, h = ((v - pad) / scale if i < 2 else v / scale for i, v in enumerate(d.box))
            left, top = max(0.0, x), max(0.0, y)
            right, bottom = min(float(width), x + w), min(float(height), y + h)
            if min(right - left, bottom - top) < self.min_face_size:
                continue
            landmarks = tuple(
                (min(max((px - pad) / scale, 0.0), width), min(max((py - pad) / scale, 0.0), height))
                for px, py in d.landmarks
            )
            faces.append(
                Detection(
                    box=(left, top, right - left, bottom - top),
                    landmarks=landmarks,  # type: ignore[arg-type]
                    score=d.score,
                )
            )
        return faces


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return rgb
    height, width = rgb.shape[:2]
    return resized(rgb, (max(1, round(width * scale)), max(1, round(height * scale))))


def _in_batches(network, size: int = 512):
    """The network over its input `size` patches at a time: on a textured photo at full
    resolution P-Net proposes thousands of windows, and R-Net's activations for 6,500 of them
    took 0.9 GB at once."""

    def run(patches):
        import tensorflow as tf

        if patches.shape[0] <= size:
            return network(patches)
        parts = [network(patches[start : start + size]) for start in range(0, patches.shape[0], size)]
        return tuple(tf.concat([part[k] for part in parts], axis=0) for k in range(len(parts[0])))

    return run


def iou(a: Detection, b: Detection) -> float:
    return box_iou(a.box, b.box)


def covered(a: Detection, b: Detection) -> float:
    """The share of the smaller box that lies inside the other."""
    smaller = min(a.area, b.area)
    return box_intersection(a.box, b.box) / smaller if smaller > 0 else 0.0


def union(first: list[Detection], second: list[Detection], overlap: float = 0.5) -> list[Detection]:
    """`first`'s faces, and those of `second` that are none of them: a face of `second` half
    inside (or around) a face of `first` is that face (a copy can box part of a face: at 960 px
    `sample3.jpg` gave one face a box of its lower half)."""
    return first + [d for d in second if all(covered(d, kept) <= overlap for kept in first)]


class TensorflowMtcnn:
    """mtcnn's detect_faces for one image, with facedb's P-Net stage (pnet.py) in front of
    mtcnn's own R-Net and O-Net stages, on TensorFlow; the same JSON out."""

    def __init__(self, pnet: PyramidPNet, rnet, onet) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet

    def proposals(self, rgb: np.ndarray, min_face: int) -> np.ndarray:
        return self.pnet.proposals(rgb, min_face)

    def faces(self, rgb: np.ndarray, min_face: int, face_threshold: float) -> list[dict]:
        import tensorflow as tf
        from mtcnn.utils.bboxes import limit_bboxes, to_json

        boxes = self.pnet.proposals(rgb, min_face)
        if len(boxes) == 0:
            return []
        normalized = tf.constant(((rgb.astype(np.float32) - 127.5) / 128)[None])
        for stage, options in ((self.rnet, {}), (self.onet, {"threshold_onet": face_threshold})):
            boxes = stage(images_normalized=normalized, bboxes_batch=boxes, **options)
            if len(boxes) == 0:
                return []
        boxes = limit_bboxes(boxes, images_shapes=np.asarray([rgb.shape]), limit_landmarks=False)
        return to_json(boxes, images_count=1, input_as_width_height=False, output_as_width_height=True)[0]


_LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def detection_from_mtcnn(item: dict, scale: float = 1.0) -> Detection:
    """One face of mtcnn's JSON output, in the pixels of an image `1 / scale` times the size."""
    box = tuple(float(v) / scale for v in item["box"])
    landmarks = tuple(
        (float(item["keypoints"][k][0]) / scale, float(item["keypoints"][k][1]) / scale) for k in _LANDMARKS
    )
    return Detection(box=box, landmarks=landmarks, score=float(item["confidence"]))  # type: ignore[arg-type]


class TutorialDetector:
    """MTCNN as the tutorials call it: `MTCNN().detect_faces(image)` at full resolution, with
    the package's defaults (20 px smallest face, thresholds 0.6 / 0.7 / 0.8)."""

    name = "mtcnn.MTCNN().detect_faces, full resolution"

    def __init__(self, min_face_size: int = 20) -> None:
        from mtcnn import MTCNN

        self.model = MTCNN()
        self.min_face_size = min_face_size

    def load(self) -> None:
        pass

    def every_box(self, rgb) -> list[Detection]:
        """Everything detect_faces returns, also boxes that its regression shrank below the
        smallest face it looks for."""
        return [detection_from_mtcnn(item) for item in self.model.detect_faces(rgb, min_face_size=self.min_face_size)]

    def detect(self, rgb) -> list[Detection]:
        return [d for d in self.every_box(rgb) if min(d.box[2:]) >= self.min_face_size]
