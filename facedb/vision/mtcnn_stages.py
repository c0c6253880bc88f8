"""MTCNN's stages around its three networks, in numpy, for runtimes other than TensorFlow.

mtcnn 1.0 (MIT) runs its pyramid resizing and patch cropping as TensorFlow ops and its box
arithmetic in numpy. Here all of it is numpy, written to give the same numbers: the pyramid's
area resampling as TensorFlow's `resize_area`, the patches as `crop_and_resize` (bilinear,
zero outside the image), and the R-Net and O-Net steps as mtcnn's StageRNet and StageONet
(confidence, box regression, threshold, suppression, squaring), so that the networks can run
on ONNX Runtime and the faces stay those of the TensorFlow path (tests/test_runtime.py
measures how close on real photos).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import pnet as pnet_module
from .pnet import FACE_THRESHOLD, boxes_from_cells, cells_in_strips, pyramid_scales, square, suppress

RNET_SIZE, ONET_SIZE = 24, 48
RNET_THRESHOLD = 0.7  # mtcnn's defaults
SUPPRESS_AFTER_RNET, SUPPRESS_AFTER_ONET = 0.7, 0.7
PATCHES_PER_CALL = 512  # R-Net's activations for 6,500 patches at once took 0.9 GB (detect.py)

# A network: float32 NHWC input -> its outputs in mtcnn's order.
Network = Callable[[np.ndarray], Sequence[np.ndarray]]


def normalise(pixels: np.ndarray) -> np.ndarray:
    """MTCNN's input scaling. A pyramid level is resized first, then normalised: mtcnn's
    normalise-then-resize on a quarter of the bytes (area resampling is linear; pnet.py too)."""
    return (pixels.astype(np.float32, copy=False) - np.float32(127.5)) / np.float32(128)


def _edges(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Where target cell i begins and ends in the source, i * s and (i + 1) * s with
    s = source / target in float32 as TensorFlow's resize_area computes them: the source cell
    each edge falls in (the last one for edges at or past the end) and how far into it."""
    scale = np.float32(source) / np.float32(target)
    edges = np.arange(target + 1, dtype=np.float32) * scale
    cell = np.minimum(np.floor(edges).astype(np.int64), source - 1)
    return cell, edges.astype(np.float64) - cell, scale


def _area_along_first_axis(values: np.ndarray, sums: np.ndarray, target: int) -> np.ndarray:
    """Area averages along axis 0 (float32) from running sums, sums[k] = values[:k].sum(0): the
    integral up to an edge is the sum of the whole cells before it plus the covered part of
    the cell it falls in, and a target cell is the difference of its two edges' integrals,
    taken as (whole cells between) + (covered part at the end) - (uncovered part at the start)
    so that no large sums are subtracted in float32."""
    cell, into, scale = _edges(values.shape[0], target)
    shape = (-1,) + (1,) * (values.ndim - 1)
    start, end = cell[:-1], cell[1:]
    whole = (sums[end] - sums[start]).astype(np.float32)
    whole += into[1:].astype(np.float32).reshape(shape) * values[end]
    whole -= into[:-1].astype(np.float32).reshape(shape) * values[start]
    whole /= scale
    return whole


def _running_sums(values: np.ndarray) -> np.ndarray:
    """sums[k] = values[:k].sum(0), exact for pixels (int32: 8 million rows of 255 fit). Row
    by row: numpy's cumsum down axis 0 took 3-8x longer (a 640 x 480 photo: 1 ms here)."""
    flat = values.reshape(values.shape[0], -1)
    sums = np.empty((flat.shape[0] + 1, flat.shape[1]), np.int32 if values.dtype.kind in "ui" else np.float64)
    sums[0] = 0
    for row in range(flat.shape[0]):
        np.add(sums[row], flat[row], out=sums[row + 1])
    return sums.reshape(flat.shape[0] + 1, *values.shape[1:])


def _area_along_first_axis_banded(values: np.ndarray, target: int) -> np.ndarray:
    """The same averages as weighted sums of the few source rows each target row covers (at
    most source / target + 2 of them): no running sums, for values of one use."""
    cell, into, scale = _edges(values.shape[0], target)
    start, end = cell[:-1], cell[1:]
    shape = (-1,) + (1,) * (values.ndim - 1)
    out = np.zeros((target, *values.shape[1:]), np.float32)
    for offset in range(int(np.max(end - start)) + 1):
        row = start + offset
        weight = np.where(row < end, 1.0, into[1:]) - np.where(offset == 0, into[:-1], 0.0)
        weight = np.where(row <= end, weight, 0.0).astype(np.float32)
        out += weight.reshape(shape) * values[np.minimum(row, values.shape[0] - 1)]
    out /= scale
    return out


class AreaPyramid:
    """Pyramid levels of one photo, each the mean of the source area every output pixel
    covers (TensorFlow's resize_area, for downscaling), to within float rounding. Across the
    rows first, from running sums along them (exact, in integers) made once and shared by all
    levels of a photo; then down the columns as weighted sums of the rows each output pixel
    covers. Both passes gather whole rows of a contiguous array (the photo is held transposed
    for the first), which took a third of the time of gathering columns. The sums take 4 bytes
    a value: a 12 MP second look peaked at 1.0 GB with them against 1.1 GB when they were
    made per level a band at a time, and took 1.8 s against 3.1 s."""

    def __init__(self, image: np.ndarray) -> None:
        self.columns = np.ascontiguousarray(np.swapaxes(image, 0, 1))  # [W, H, C]
        self.sums = _running_sums(self.columns)

    def level(self, height: int, width: int) -> np.ndarray:
        """[height, width, C] float32."""
        narrowed = _area_along_first_axis(self.columns, self.sums, width)
        return _area_along_first_axis_banded(np.ascontiguousarray(np.swapaxes(narrowed, 0, 1)), height)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, C] -> float32 [height, width, C] by area averaging, as TensorFlow's resize_area."""
    return AreaPyramid(image).level(height, width)


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow's crop_and_resize (bilinear) of one image [H, W, C] at boxes [N, 4] given as
    normalised (y1, x1, y2, x2): patches [N, size, size, C], 0 where they reach outside."""
    height, width = image.shape[:2]
    steps = np.arange(size, dtype=np.float32)
    y1, x1, y2, x2 = (boxes[:, k].astype(np.float32)[:, None] for k in range(4))
    ys = y1 * np.float32(height - 1) + steps * ((y2 - y1) * np.float32(height - 1) / np.float32(size - 1))
    xs = x1 * np.float32(width - 1) + steps * ((x2 - x1) * np.float32(width - 1) / np.float32(size - 1))
    inside = ((ys >= 0) & (ys <= height - 1))[:, :, None] & ((xs >= 0) & (xs <= width - 1))[:, None, :]
    ys, xs = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
    top, left = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    bottom, right = np.ceil(ys).astype(np.int64), np.ceil(xs).astype(np.int64)
    dy = (ys - top)[:, :, None, None]
    dx = (xs - left)[:, None, :, None]
    # whole pixels (all channels) by flat index: a third of the time of 2-D fancy indexing
    pixels = image.reshape(height * width, -1)

    def at(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return np.take(pixels, rows[:, :, None] * width + columns[:, None, :], axis=0)

    upper, lower = at(top, left), at(bottom, left)
    upper += (at(top, right) - upper) * dx
    lower += (at(bottom, right) - lower) * dx
    upper += (lower - upper) * dy
    upper[~inside] = 0
    return upper


def _patches(normalised: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """mtcnn's extract_patches: the boxes (x1, y1, x2, y2 in pixels) normalised by the image size."""
    height, width = normalised.shape[:2]
    return crop_and_resize(normalised, boxes[:, [2, 1, 4, 3]] / np.asarray([[height, width, height, width]]), size)


def _run(network: Network, normalised: np.ndarray, boxes: np.ndarray, size: int) -> list[np.ndarray]:
    parts = [
        network(_patches(normalised, boxes[start : start + PATCHES_PER_CALL], size))
        for start in range(0, len(boxes), PATCHES_PER_CALL)
    ]
    return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]


def _by_score_as_mtcnn(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.argsort(boxes[:, 5])[::-1]]  # mtcnn's sort_by_scores, ties included


def _regressed(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """mtcnn's adjust_bboxes: offsets in units of the box's size (+1, as mtcnn counts pixels)."""
    boxes = boxes.copy()
    w = boxes[:, 3] - boxes[:, 1] + 1
    h = boxes[:, 4] - boxes[:, 2] + 1
    boxes[:, 1:5] += offsets * np.stack([w, h, w, h], axis=-1)
    return boxes


def refine_rnet(normalised: np.ndarray, proposals: np.ndarray, rnet: Network) -> np.ndarray:
    """StageRNet: P-Net's squared proposals [N, 6] -> R-Net's, squared for O-Net."""
    offsets, scores = _run(rnet, normalised, proposals, RNET_SIZE)
    boxes = proposals.copy()
    boxes[:, -1] = scores[:, -1]
    boxes = _regressed(boxes, offsets)
    boxes = boxes[boxes[:, -1] > RNET_THRESHOLD]
    return square(suppress(_by_score_as_mtcnn(boxes), SUPPRESS_AFTER_RNET))


def refine_onet(normalised: np.ndarray, candidates: np.ndarray, onet: Network, threshold: float) -> np.ndarray:
    """StageONet: R-Net's boxes -> faces [N, 16]: 0, x1, y1, x2, y2, score, the five landmarks'
    x then their y (in pixels)."""
    offsets, landmarks, scores = _run(onet, normalised, candidates, ONET_SIZE)
    w = candidates[:, 3:4] - candidates[:, 1:2] + 1
    h = candidates[:, 4:5] - candidates[:, 2:3] + 1
    points = np.concatenate(
        [w * landmarks[:, 0:5] + candidates[:, 1:2] - 1, h * landmarks[:, 5:10] + candidates[:, 2:3] - 1], axis=1
    )
    boxes = candidates.copy()
    boxes[:, -1] = scores[:, -1]
    boxes = np.concatenate([_regressed(boxes, offsets), points], axis=-1)
    boxes = boxes[boxes[:, 5] > threshold]
    return suppress(_by_score_as_mtcnn(boxes), SUPPRESS_AFTER_ONET, over_smaller=True)


_LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def as_mtcnn_json(faces: np.ndarray, height: int, width: int) -> list[dict]:
    """mtcnn's limit_bboxes (boxes only) and to_json: boxes as rounded x, y, width, height and
    landmarks as rounded points, the form detect.detection_from_mtcnn reads."""
    faces = faces.copy()
    faces[:, [1, 3]] = np.clip(faces[:, [1, 3]], 0, width - 1)
    faces[:, [2, 4]] = np.clip(faces[:, [2, 4]], 0, height - 1)
    out = []
    for face in faces:
        x1, y1, x2, y2 = face[1:5]
        box = np.asarray([x1, y1, x2 - x1, y2 - y1]).round().astype(int).tolist()
        points = face[6:16].round().astype(int)
        keypoints = {name: [int(points[k]), int(points[k + 5])] for k, name in enumerate(_LANDMARKS)}
        out.append({"box": box, "confidence": float(face[5]), "keypoints": keypoints})
    return out


class NumpyMtcnn:
    """MTCNN's detect_faces for one image with the three networks given as functions (ONNX
    Runtime sessions, say): P-Net on each pyramid level, then R-Net and O-Net on patches.

    The levels of one photo are resized and run in `level_threads` threads (numpy and ONNX
    Runtime let go of the GIL), as TensorFlow runs them side by side in one graph: one photo
    alone then uses the cores, and photos detected at once share them."""

    def __init__(self, pnet: Network, rnet: Network, onet: Network, level_threads: int = 2) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self._levels = ThreadPoolExecutor(max_workers=level_threads, thread_name_prefix="facedb-pnet")

    def proposals(self, rgb: np.ndarray, min_face: int) -> np.ndarray:
        height, width = rgb.shape[:2]
        scales = pyramid_scales(width, height, min_face)
        pyramid = AreaPyramid(rgb)

        def cells_of_level(index: int) -> np.ndarray:
            scale = scales[index]
            level = normalise(pyramid.level(int(height * scale), int(width * scale)))[None]
            if level.shape[1] * level.shape[2] > pnet_module.PIXELS_PER_CALL:
                return cells_in_strips(level, self._cells, index)
            found = self._cells(level)
            return np.concatenate([np.full((len(found), 1), float(index)), found], axis=1)

        cells = list(self._levels.map(cells_of_level, range(len(scales))))
        return boxes_from_cells(np.concatenate(cells) if cells else np.empty((0, 8)), scales)

    def _cells(self, level: np.ndarray) -> np.ndarray:
        """Rows [y, x, score, 4 box offsets] of the cells of a level that pass P-Net's threshold."""
        regression, face = self.pnet(level)
        found = np.argwhere(face > FACE_THRESHOLD)
        y, x = found[:, 0], found[:, 1]
        return np.concatenate([found, face[y, x][:, None], regression[y, x]], axis=1).astype(np.float64)

    def faces(self, rgb: np.ndarray, min_face: int, face_threshold: float) -> list[dict]:
        boxes = self.proposals(rgb, min_face)
        if len(boxes) == 0:
            return []
        normalised = normalise(rgb)
        boxes = refine_rnet(normalised, boxes, self.rnet)
        if len(boxes) == 0:
            return []
        boxes = refine_onet(normalised, boxes, self.onet, face_threshold)
        if len(boxes) == 0:
            return []
        return as_mtcnn_json(boxes, *rgb.shape[:2])
