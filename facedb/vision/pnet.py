"""MTCNN's first stage (P-Net over the image pyramid), made cheaper without changing its answers.

On 2 cores this stage was three quarters of facedb's detection time, and within it the first
convolution (3x3 over 3 channels at every pixel of every level), its PReLU and 2x2 max-pool
took 60% of P-Net. The same numbers come from one 4x4 convolution at stride 2 with 40
outputs (the 3x3 kernel at each of the four positions a pool window covers), a PReLU and a max
over the four groups: one dense pass over a quarter of the positions instead of a sparse one
over all of them (1.5x on a 448x358 level, outputs equal to 1e-6). All levels of an image are
resized and run in one graph call, where mtcnn 1.0 returns to Python after every resize and
every level.

Proposals are then made as mtcnn makes them: its scales, threshold, box regression, two rounds
of its suppression and squaring, so its R-Net and O-Net stages take them as their own. Levels
with an odd side lose their last row or column of cells, whose 12 px windows would reach past
the image (mtcnn pads them).
"""

from __future__ import annotations

import numpy as np

SCALE_FACTOR = 0.709  # mtcnn's defaults, kept so that the same faces are looked for
MIN_LEVEL_SIDE = 12  # P-Net's window: no level, and no face, is smaller
FACE_THRESHOLD = 0.6
SUPPRESS_PER_LEVEL = 0.5
SUPPRESS_ACROSS_LEVELS = 0.7
LEVELS_PER_CALL = 12  # a 640 x 640 photo has 11 with a 12 px smallest face; more take two calls
# P-Net's intermediates take about 230 bytes a level pixel, so a level larger than this (a
# second look at a big photo) runs in strips of rows, which give the same cells. A 12 MP look
# at a black photo peaked 674 MB with strips of 250,000 against 756 MB with 1,000,000, and took
# 1.4 s against 1.9 s; a 640 px copy's levels are all smaller.
PIXELS_PER_CALL = 250_000


def pyramid_scales(width: int, height: int, min_face: int) -> list[float]:
    """mtcnn's build_scale_pyramid, without the levels too small for one 12 px window."""
    count = round(-((np.log(min(width, height) / MIN_LEVEL_SIDE) / np.log(SCALE_FACTOR)) + 1))
    scales = (MIN_LEVEL_SIDE / min_face) * SCALE_FACTOR ** np.arange(max(0, count))
    return [float(s) for s in scales if min(int(width * s), int(height * s)) >= MIN_LEVEL_SIDE]


def pooled_first_layer_kernel(kernel: np.ndarray, bias: np.ndarray, alpha: np.ndarray):
    """conv 3x3 (3 -> C) + PReLU + 2x2/2 max-pool as conv 4x4/2 (3 -> 4C), PReLU, max of 4 groups."""
    channels = kernel.shape[-1]
    grouped = np.zeros((4, 4, 3, 2, 2, channels), np.float32)
    for dy in range(2):
        for dx in range(2):
            grouped[dy : dy + 3, dx : dx + 3, :, dy, dx, :] = kernel
    return (
        grouped.reshape(4, 4, 3, 4 * channels),
        np.tile(bias, 4).astype(np.float32),
        np.tile(alpha.reshape(-1), 4).astype(np.float32),
    )


def suppress(boxes: np.ndarray, threshold: float, over_smaller: bool = False) -> np.ndarray:
    """mtcnn's suppression: with boxes sorted by falling score, a box is dropped when any better
    box overlaps it by more than `threshold` (IoU; with over_smaller the intersection over the
    smaller box, as mtcnn's O-Net stage), whether or not that box was itself dropped. In
    blocks, so that a textured photo's thousands of proposals need no n x n matrix."""
    keep = np.ones(len(boxes), bool)
    x1, y1, x2, y2 = boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1) * (y2 - y1)
    for start in range(1, len(boxes), 512):
        stop = min(len(boxes), start + 512)
        width = np.maximum(
            0, np.minimum(x2[start:stop, None], x2[None, :stop]) - np.maximum(x1[start:stop, None], x1[None, :stop])
        )
        height = np.maximum(
            0, np.minimum(y2[start:stop, None], y2[None, :stop]) - np.maximum(y1[start:stop, None], y1[None, :stop])
        )
        inter = width * height
        with np.errstate(divide="ignore", invalid="ignore"):
            if over_smaller:
                overlap = inter / np.minimum(area[start:stop, None], area[None, :stop])
            else:
                overlap = inter / (area[start:stop, None] + area[None, :stop] - inter)
        better = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
        keep[start:stop] = ~((overlap > threshold) & better).any(axis=1)
    return boxes[keep]


def by_score(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.argsort(-boxes[:, 5], kind="stable")]


def square(boxes: np.ndarray) -> np.ndarray:
    """mtcnn's resize_to_square: each box grown to a square about its centre."""
    boxes = boxes.copy()
    h = boxes[:, 4] - boxes[:, 2]
    w = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 1] = boxes[:, 1] + w * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 2] + h * 0.5 - side * 0.5
    boxes[:, 3:5] = boxes[:, 1:3] + np.tile(side, (2, 1)).T
    return boxes


def cells_in_strips(level, cells_of, index: int) -> np.ndarray:
    """The passing cells of a level [1, h, w, 3] too large for one call, a strip of rows at a
    time: a strip of rows [r, r + n) gives the cells whose 12-row windows lie in it (VALID
    convolutions, stride 2); the next strip starts at the first window it did not hold.
    `cells_of(strip)` gives rows [y, x, score, 4 box offsets]; the result has the level first."""
    height, width = int(level.shape[1]), int(level.shape[2])
    rows = max(MIN_LEVEL_SIDE, (PIXELS_PER_CALL // width) // 2 * 2)
    found, top = [], 0
    while height - top >= MIN_LEVEL_SIDE:
        strip = level[:, top : top + rows] if height - top - rows >= MIN_LEVEL_SIDE else level[:, top:]
        cells = np.array(cells_of(strip), dtype=np.float64)
        cells[:, 0] += top // 2
        found.append(np.concatenate([np.full((len(cells), 1), float(index)), cells], axis=1))
        top += 2 * ((int(strip.shape[1]) - MIN_LEVEL_SIDE) // 2 + 1)
    return np.concatenate(found) if found else np.empty((0, 8))


def boxes_from_cells(every_cell: np.ndarray, scales: list[float]) -> np.ndarray:
    """Rows [level, y, x, score, 4 box offsets] of the passing cells of all levels -> mtcnn's
    proposals: boxes in the image's pixels, suppressed within each level and across them,
    squared (rows [0, x1, y1, x2, y2, score])."""
    per_level = []
    for index, scale in enumerate(scales):
        rows = every_cell[every_cell[:, 0] == index]
        if len(rows) == 0:
            continue
        y, x, score, offsets = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4:8] * 11
        # mtcnn's generate_bounding_box: cell (y, x) is the window [2x + 1, 2x + 12] (11 px).
        boxes = np.stack(
            [
                np.zeros(len(rows)),
                2 * x + 1 + offsets[:, 0],
                2 * y + 1 + offsets[:, 1],
                2 * x + 12 + offsets[:, 2],
                2 * y + 12 + offsets[:, 3],
                score,
            ],
            axis=1,
        )
        boxes[:, 1:5] /= scale
        per_level.append(suppress(by_score(boxes), SUPPRESS_PER_LEVEL))
    if not per_level:
        return np.empty((0, 6))
    return square(suppress(by_score(np.concatenate(per_level)), SUPPRESS_ACROSS_LEVELS))


class PyramidPNet:
    """P-Net proposals for one image: rows [0, x1, y1, x2, y2, score] in its pixels, squared,
    in the form mtcnn's R-Net stage takes. Threads may share one instance.

    The whole pyramid is one graph call (traced once, at load): TensorFlow runs the small
    levels alongside the large ones and nothing returns to Python between levels, which
    nearly halved the stage again (3.3 s -> 1.9 s over the 42 test photos, one thread)."""

    def __init__(self, pnet) -> None:
        kernel, bias = pnet.conv1.get_weights()
        self._first = pooled_first_layer_kernel(kernel, bias, pnet.prelu1.get_weights()[0])
        self._middle = [
            (*conv.get_weights(), prelu.get_weights()[0].reshape(-1))
            for conv, prelu in ((pnet.conv2, pnet.prelu2), (pnet.conv3, pnet.prelu3))
        ]
        # The two 1x1 heads (4 box offsets, 2 class logits) as one 1x1 convolution.
        (box_kernel, box_bias), (class_kernel, class_bias) = pnet.conv4_1.get_weights(), pnet.conv4_2.get_weights()
        self._heads = np.concatenate([box_kernel, class_kernel], axis=-1), np.concatenate([box_bias, class_bias])
        self._pyramid = self._build_pyramid()
        self._resized, self._cells = self._build_strips()
        self._cells(self._resized(np.zeros((1, 24, 24, 3), np.uint8), np.array([12, 12], np.int32)))  # trace now

    def network(self, level):
        """P-Net on one normalised level [1, h, w, 3] -> (box offsets [h', w', 4], face [h', w'])."""
        import tensorflow as tf

        def prelu(x, alpha):
            return tf.maximum(x, 0.0) + alpha * tf.minimum(x, 0.0)

        kernel4, bias4, alpha4 = self._first
        c = kernel4.shape[-1] // 4
        x = prelu(tf.nn.conv2d(level, kernel4, 2, "VALID") + bias4, alpha4)
        x = tf.maximum(tf.maximum(x[..., :c], x[..., c : 2 * c]), tf.maximum(x[..., 2 * c : 3 * c], x[..., 3 * c :]))
        for kernel, bias, alpha in self._middle:
            x = prelu(tf.nn.conv2d(x, kernel, 1, "VALID") + bias, alpha)
        heads = tf.nn.conv2d(x, self._heads[0], 1, "VALID")[0] + self._heads[1]
        return heads[..., :4], tf.nn.softmax(heads[..., 4:])[..., 1]

    def _build_pyramid(self):
        """One graph for LEVELS_PER_CALL levels: rows [level, y, x, score, 4 box offsets] of the
        cells that pass P-Net's threshold. Unused levels are given 12 x 12 px and dropped after."""
        import tensorflow as tf

        @tf.function(
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8), tf.TensorSpec([LEVELS_PER_CALL, 2], tf.int32)]
        )
        def pyramid(image, sizes):
            found = []
            for index in range(LEVELS_PER_CALL):
                # Area resampling is linear: resizing the pixels, then normalising them, is
                # mtcnn's normalise-then-resize on a quarter of the bytes.
                level = (tf.image.resize(image, sizes[index], method="area") - 127.5) / 128
                regression, face = self.network(level)
                cells = tf.where(face > FACE_THRESHOLD)
                found.append(
                    tf.concat(
                        [
                            tf.fill([tf.shape(cells)[0], 1], float(index)),
                            tf.cast(cells, tf.float32),
                            tf.gather_nd(face, cells)[:, None],
                            tf.gather_nd(regression, cells),
                        ],
                        axis=1,
                    )
                )
            return tf.concat(found, axis=0)

        return pyramid

    def _build_strips(self):
        """Two graphs for a level too large for one call: resize the photo to the level, and
        rows [y, x, score, 4 box offsets] of the passing cells of a strip of its rows."""
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int32)])
        def resized(image, size):
            return (tf.image.resize(image, size, method="area") - 127.5) / 128

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        def cells(level):
            regression, face = self.network(level)
            found = tf.where(face > FACE_THRESHOLD)
            return tf.concat(
                [tf.cast(found, tf.float32), tf.gather_nd(face, found)[:, None], tf.gather_nd(regression, found)],
                axis=1,
            )

        return resized, cells

    def _level_in_strips(self, image, size: np.ndarray, index: int) -> np.ndarray:
        import tensorflow as tf

        level = self._resized(image, tf.constant(size, tf.int32))
        return cells_in_strips(level, lambda strip: self._cells(strip).numpy(), index)

    def proposals(self, rgb: np.ndarray, min_face: int) -> np.ndarray:
        import tensorflow as tf

        height, width = rgb.shape[:2]
        scales = pyramid_scales(width, height, min_face)
        if not scales:
            return np.empty((0, 6))
        sizes = np.asarray([[int(height * s), int(width * s)] for s in scales], np.int32)
        image = tf.constant(rgb[None])
        large = [i for i, (h, w) in enumerate(sizes) if h * w > PIXELS_PER_CALL]
        cells = [self._level_in_strips(image, sizes[i], i).astype(np.float64) for i in large]
        rest = [i for i in range(len(sizes)) if i not in large]
        for first in range(0, len(rest), LEVELS_PER_CALL):
            chunk = np.asarray(rest[first : first + LEVELS_PER_CALL])
            padded = np.concatenate(
                [sizes[chunk], np.full((LEVELS_PER_CALL - len(chunk), 2), MIN_LEVEL_SIDE, np.int32)]
            )
            found = self._pyramid(image, tf.constant(padded)).numpy()
            found = found[found[:, 0] < len(chunk)]
            found[:, 0] = chunk[found[:, 0].astype(int)]
            cells.append(found.astype(np.float64))
        return boxes_from_cells(np.concatenate(cells), scales)
