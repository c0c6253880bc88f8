"""The face-verification and identification figures of `facedb eval` and `facedb calibrate`.

Verification is computed as the published FaceNet/LFW protocol computes it (facenet.calculate_roc
and calculate_val, driven by lfw.evaluate): ten folds in pairs-file order, the accuracy threshold
chosen on the other nine folds from a fixed grid, VAL at FAR 1e-3 by inverting the training FAR
curve. Everything here is plain arrays in, plain numbers out: no database, no models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# FaceNet's grids (lfw.evaluate): coarse for accuracy, fine for VAL. They reach 4 because FaceNet
# compares squared distances; Euclidean distances of unit vectors (0..2) lie inside them too.
ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)

_WILSON_Z = 1.959963984540054  # two-sided 95%
_QUERY_BLOCK = 1024  # queries per distance block in identification: 1024 x 20,000 float32 is 80 MB


def pair_distances(left: np.ndarray, i: np.ndarray, right: np.ndarray, j: np.ndarray, block: int = 65536) -> np.ndarray:
    """Euclidean distances of left[i[k]] to right[j[k]], a block of pairs at a time (memory)."""
    out = np.empty(len(i), np.float64)
    for start in range(0, len(i), block):
        stop = start + block
        out[start:stop] = np.linalg.norm(left[i[start:stop]] - right[j[start:stop]], axis=1)
    return out


def lfw_folds(n_pairs: int, folds: int = 10) -> np.ndarray:
    """Fold index per pair in file order, split as sklearn's KFold(shuffle=False) splits.

    FaceNet's validate_on_lfw does this on pairs.txt, whose ten blocks are the official folds.
    """
    if n_pairs < folds:
        raise ValueError(f"{n_pairs} pairs cannot be split into {folds} folds")
    sizes = np.full(folds, n_pairs // folds)
    sizes[: n_pairs % folds] += 1
    return np.repeat(np.arange(folds), sizes)


def seeded_folds(n_pairs: int, folds: int = 10, seed: int = 0) -> np.ndarray:
    """Folds for pairs with no official order (made from a folder tree): a seeded shuffle, then KFold."""
    fold_of_position = lfw_folds(n_pairs, folds)
    result = np.empty(n_pairs, dtype=fold_of_position.dtype)
    result[np.random.default_rng(seed).permutation(n_pairs)] = fold_of_position
    return result


def verification(
    distances: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    far_target: float = 1e-3,
    default_threshold: float | None = None,
) -> dict:
    """Cross-validated accuracy and VAL@FAR (FaceNet's protocol) plus AUC, EER and a threshold to use.

    A pair is accepted when distance < threshold, as FaceNet's np.less. Accuracy: per fold, the
    ACCURACY_THRESHOLDS value with the best accuracy on the other folds (the first on ties, as
    np.argmax), scored on the fold. VAL: per fold, the threshold where the other folds' FAR on
    VAL_THRESHOLDS meets `far_target` (see `_threshold_at_far`), or 0.0 when it never does.
    `best_threshold` is the ACCURACY_THRESHOLDS value with the best accuracy on all pairs: the one
    a user would set. With `default_threshold`, also the accuracy a user gets at it, tuned on
    nothing (accept d <= t, as who does).
    """
    distances, same = _checked_pairs(distances, same)
    if not 0 < far_target < 1:
        raise ValueError(f"far_target must lie between 0 and 1, not {far_target}")
    folds = np.asarray(folds)
    if folds.shape != distances.shape:
        raise ValueError("folds must give one fold per pair")
    accuracy, val, far = [], [], []
    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        train_accuracy = _accuracies(distances[train], same[train], ACCURACY_THRESHOLDS)
        threshold = ACCURACY_THRESHOLDS[np.argmax(train_accuracy)]
        accuracy.append(np.mean((distances[test] < threshold) == same[test]))
        threshold = _threshold_at_far(distances[train][~same[train]], far_target)
        accepted = distances[test] < threshold
        val.append(_share(accepted[same[test]]))
        far.append(_share(accepted[~same[test]]))
    return {
        "pairs": int(distances.size),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
        "accuracy": float(np.mean(accuracy)),
        "accuracy_std": float(np.std(accuracy)),
        "auc": auc(distances, same),
        f"val_at_far_{far_target:g}": float(np.nanmean(val)),
        "val_std": float(np.nanstd(val)),
        "far": float(np.nanmean(far)),
        "eer": eer(distances, same),
        "best_threshold": float(ACCURACY_THRESHOLDS[np.argmax(_accuracies(distances, same, ACCURACY_THRESHOLDS))]),
    } | (
        {}
        if default_threshold is None
        else {
            "default_threshold": float(default_threshold),
            "accuracy_at_default": float(np.mean((distances <= default_threshold) == same)),
        }
    )


def _checked_pairs(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if distances.ndim != 1 or same.shape != distances.shape:
        raise ValueError("distances and same must be 1-d arrays of one length")
    if not same.any():
        raise ValueError("no genuine pairs (two photos of one person): nothing to verify")
    if same.all():
        raise ValueError("no impostor pairs (photos of two different people): nothing to verify")
    return distances, same


def _share(flags: np.ndarray) -> float:
    # A seeded fold can lack genuine or impostor pairs; it then has no VAL (or FAR) to average.
    return float(flags.mean()) if flags.size else float("nan")


def _accuracies(distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy at every threshold from two sorts instead of one pass per threshold."""
    genuine, impostor = np.sort(distances[same]), np.sort(distances[~same])
    true_accepts = np.searchsorted(genuine, thresholds, side="left")  # genuine d < t
    true_rejects = impostor.size - np.searchsorted(impostor, thresholds, side="left")
    return (true_accepts + true_rejects) / distances.size


def _threshold_at_far(impostor: np.ndarray, far_target: float) -> float:
    """FaceNet's interp1d(far_train, thresholds, kind='slinear')(far_target), without its duplicates.

    FAR on the grid is a staircase. Between two steps the threshold is interpolated from the last
    grid point of the lower step to the first of the upper, as the degree-1 spline reads a staircase
    (so it stays within one grid step of the jump, unlike interpolating between the steps' ends);
    a target exactly on a step gets that step's last grid point, the most genuine accepts at that FAR.
    """
    if impostor.size == 0:
        return 0.0
    far_train = np.searchsorted(np.sort(impostor), VAL_THRESHOLDS, side="left") / impostor.size
    if far_train.max() < far_target:
        return 0.0
    levels, first = np.unique(far_train, return_index=True)  # far_train never decreases
    last = np.append(first[1:] - 1, far_train.size - 1)
    step = int(np.searchsorted(levels, far_target))
    if levels[step] == far_target:
        return float(VAL_THRESHOLDS[last[step]])
    low, high = levels[step - 1], levels[step]
    fraction = (far_target - low) / (high - low)
    t_low, t_high = VAL_THRESHOLDS[last[step - 1]], VAL_THRESHOLDS[first[step]]
    return float(t_low + fraction * (t_high - t_low))


def auc(distances: np.ndarray, same: np.ndarray) -> float:
    """ROC AUC, exactly: P(a random impostor pair is farther than a random genuine pair), ties 1/2.

    This is the Mann-Whitney U statistic, from mid-ranks of all distances in O(n log n).
    """
    distances, same = _checked_pairs(distances, same)
    _, inverse, counts = np.unique(distances, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mid_ranks = ends - (counts - 1) / 2.0  # 1-based average rank of each tied group
    n_impostor, n_genuine = int((~same).sum()), int(same.sum())
    u = mid_ranks[inverse][~same].sum() - n_impostor * (n_impostor + 1) / 2.0
    return float(u / (n_impostor * n_genuine))


def roc_points(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact ROC (accept when d <= t) at every distinct distance, from (0, 0) at t = -inf."""
    distances, same = _checked_pairs(distances, same)
    thresholds = np.unique(distances)
    accepted_impostors = np.searchsorted(np.sort(distances[~same]), thresholds, side="right")
    accepted_genuine = np.searchsorted(np.sort(distances[same]), thresholds, side="right")
    far = np.append(0.0, accepted_impostors / (~same).sum())
    tar = np.append(0.0, accepted_genuine / same.sum())
    return far, tar, np.append(-np.inf, thresholds)


def eer(distances: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate: FAR == FRR, interpolated linearly between the two exact ROC points around it."""
    far, tar, _ = roc_points(distances, same)
    gap = far - (1.0 - tar)  # rises from -1 at t = -inf to +1 past the largest distance
    k = int(np.argmax(gap >= 0))
    fraction = -gap[k - 1] / (gap[k] - gap[k - 1])
    return float(far[k - 1] + fraction * (far[k] - far[k - 1]))


def identification(vectors: np.ndarray, labels: list[str] | np.ndarray, ranks: tuple[int, ...] = (1, 5)) -> dict:
    """Leave-one-out identification: each vector against all the others, candidates ranked by identity.

    An identity's distance is that of its nearest other vector, so it is ranked once. Only vectors
    whose identity has another vector are queries (the others cannot be found). Equal distances rank
    identities in sorted label order. Distances come blockwise from d^2 = 2 - 2 a.b (unit vectors).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    if vectors.ndim != 2 or codes.size != len(vectors):
        raise ValueError("vectors must be a 2-d array with one label per row")
    order = np.argsort(codes, kind="stable")
    group_starts = np.flatnonzero(np.diff(codes[order], prepend=-1))
    ordered, position = vectors[order], np.argsort(order)
    queries = np.flatnonzero(np.bincount(codes)[codes] >= 2)
    if queries.size == 0:
        raise ValueError("no identity has two or more vectors: nothing to identify")
    found_at = np.empty(queries.size, dtype=np.int64)
    for start in range(0, queries.size, _QUERY_BLOCK):
        block = queries[start : start + _QUERY_BLOCK]
        squared = np.maximum(2.0 - 2.0 * vectors[block] @ ordered.T, 0.0)
        squared[np.arange(block.size), position[block]] = np.inf  # a query is not its own match
        nearest = np.minimum.reduceat(squared, group_starts, axis=1)  # one column per identity
        own = nearest[np.arange(block.size), codes[block]][:, None]
        ahead = (nearest < own) | ((nearest == own) & (np.arange(group_starts.size) < codes[block][:, None]))
        found_at[start : start + block.size] = ahead.sum(axis=1) + 1
    return {"queries": int(queries.size), **{f"rank{k}": float(np.mean(found_at <= k)) for k in ranks}}


def pairs_from_labels(
    labels: list[str] | np.ndarray, seed: int = 0, impostor_ratio: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, same) for all genuine pairs and a seeded sample of distinct impostor pairs, i < j, each sorted.

    Impostors number round(genuine * ratio), or all there are when fewer. A sparse sample is drawn
    by rejection from random (i, j), so 20,000 photos never need their 200 million pairs listed.
    """
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    n = codes.size
    groups = _groups(codes)
    genuine = np.concatenate([_keys_within(members, n) for members in groups])
    wanted = int(round(genuine.size * impostor_ratio))
    available = (n * n - sum(members.size**2 for members in groups)) // 2
    rng = np.random.default_rng(seed)
    if wanted >= available / 2:
        impostor = _all_impostor_keys(groups, n)
        if wanted < impostor.size:
            impostor = rng.choice(impostor, size=wanted, replace=False)
    else:
        impostor = _sampled_impostor_keys(codes, wanted, rng)
    keys = np.concatenate([np.sort(genuine), np.sort(impostor)])
    return keys // n, keys % n, np.arange(keys.size) < genuine.size


def _groups(codes: np.ndarray) -> list[np.ndarray]:
    """Indices of each label, ascending, in label order."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def _keys_within(members: np.ndarray, n: int) -> np.ndarray:
    """Every pair inside one group as i * n + j, i < j (members are ascending)."""
    first, second = np.triu_indices(members.size, 1)
    return members[first].astype(np.int64) * n + members[second]


def _all_impostor_keys(groups: list[np.ndarray], n: int) -> np.ndarray:
    """Every pair of indices from different groups as i * n + j, i < j: each group against those after it."""
    keys = [np.empty(0, np.int64)]
    for g, members in enumerate(groups[:-1]):
        others = np.concatenate(groups[g + 1 :])
        i, j = np.repeat(members, others.size).astype(np.int64), np.tile(others, members.size).astype(np.int64)
        keys.append(np.minimum(i, j) * n + np.maximum(i, j))
    return np.concatenate(keys)


def _sampled_impostor_keys(codes: np.ndarray, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform distinct impostor pairs by rejection: asked for under half of them, most draws are new."""
    n = codes.size
    keys = np.empty(0, np.int64)
    while keys.size < wanted:
        draws = 2 * (wanted - keys.size) + 16
        i, j = rng.integers(n, size=draws), rng.integers(n, size=draws)
        keep = codes[i] != codes[j]
        drawn = np.minimum(i, j)[keep].astype(np.int64) * n + np.maximum(i, j)[keep]
        _, first = np.unique(drawn, return_index=True)
        drawn = drawn[np.sort(first)]  # kept in draw order, so the sample depends on the seed alone
        drawn = drawn[~np.isin(drawn, keys)]
        keys = np.concatenate([keys, drawn[: wanted - keys.size]])
    return keys


def wilson_interval(successes: int, trials: int, z: float = _WILSON_Z) -> list[float]:
    """Wilson score interval: unlike p +- z*se it stays inside [0, 1] and is honest at 0 misses."""
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return [max(0.0, centre - half), min(1.0, centre + half)]


_HEADER = re.compile(r"^\d+(\s+\d+)?$")
_SAME_PAIR = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)$")
_DIFFERENT_PAIR = re.compile(r"^(\S+)\s+(\d+)\s+(\S+)\s+(\d+)$")


def parse_lfw_pairs(text: str) -> list[tuple[str, int, str, int]]:
    """(name1, n1, name2, n2) per line of an LFW pairs file, in file order; a same pair has name1 == name2."""
    pairs = []
    for number, line in _content_lines(text, skip_header=True):
        if same := _SAME_PAIR.match(line):
            name, first, second = same.groups()
            pairs.append((name, int(first), name, int(second)))
        elif different := _DIFFERENT_PAIR.match(line):
            name1, first, name2, second = different.groups()
            pairs.append((name1, int(first), name2, int(second)))
        else:
            raise ValueError(f"pairs file line {number}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {line!r}")
    return pairs


def lfw_header_folds(text: str) -> int | None:
    """Folds named by a "<folds> <pairs>" header; None (then use seeded_folds) for "1100" or no header.

    Only pairs.txt keeps its ten folds as contiguous balanced blocks; pairsDevTrain.txt lists all
    same pairs before all different ones, so splitting it in file order would give one-class folds.
    """
    _, first_line = next(_content_lines(text, skip_header=False), (0, ""))
    fields = first_line.split()
    return int(fields[0]) if _HEADER.match(first_line) and len(fields) == 2 else None


def _content_lines(text: str, skip_header: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for non-blank lines, the header line left out if asked."""
    seen_content = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if skip_header and not seen_content and _HEADER.match(line):
            seen_content = True
            continue
        seen_content = True
        yield number, line


def lfw_image_path(images_dir: Path, name: str, number: int) -> Path:
    """Where LFW keeps a person's n-th photo: <dir>/<name>/<name>_0001.jpg."""
    return Path(images_dir) / name / f"{name}_{number:04d}.jpg"


def _left_edge(curves) -> float:
    """Where the log FAR axis starts: 1e-4, or further left for a smaller positive FAR."""
    left = 1e-4
    for _, distances, same, _ in curves:
        far = roc_points(distances, same)[0]
        if (far > 0).any():
            left = min(left, float(far[far > 0].min()))
    return left


def plot(distances: np.ndarray, same: np.ndarray, threshold: float, path: Path, title: str = "") -> None:
    """One PNG: the ROC with the chosen threshold marked, and both distance histograms with it drawn in."""
    plot_models([("", distances, same, threshold)], path, title)


def plot_models(curves: list[tuple[str, np.ndarray, np.ndarray, float]], path: Path, title: str = "") -> None:
    """One PNG: each model's ROC (model, distances, same, threshold marked) on the same pairs,
    beside their distance histograms. One curve: its threshold drawn in, the two histograms
    green and red."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server, and no window to block on
    import matplotlib.pyplot as plt

    checked = [(name, *_checked_pairs(distances, same), threshold) for name, distances, same, threshold in curves]
    left = _left_edge(checked)
    figure, (roc_axes, histogram_axes) = plt.subplots(1, 2, figsize=(12, 5))
    bins = np.linspace(0.0, 2.0, 81)
    alone = len(checked) == 1
    for (model, distances, same, threshold), colour in zip(checked, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        name = model.split()[-1] if model else ""  # the version tells the models apart
        far, tar, _ = roc_points(distances, same)
        label = f"{name} (AUC {auc(distances, same):.4f})" if name else None
        roc_axes.plot(np.maximum(far, left), tar, color=colour, label=label)  # FAR 0 drawn at the left edge
        roc_axes.plot(
            [max(float(np.mean(distances[~same] <= threshold)), left)],
            [np.mean(distances[same] <= threshold)],
            "o",
            color="tab:orange" if alone else colour,
            label=f"threshold {threshold:.3f}" if alone else None,
        )
        if alone:
            for flags, shade, what in ((same, "tab:green", "same person"), (~same, "tab:red", "different people")):
                histogram_axes.hist(distances[flags], bins=bins, density=True, alpha=0.55, color=shade, label=what)
            histogram_axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
        else:
            histogram_axes.hist(
                distances[same], bins=bins, density=True, alpha=0.35, color=colour, label=f"{name}: same"
            )
            histogram_axes.hist(
                distances[~same], bins=bins, density=True, histtype="step", color=colour, label=f"{name}: different"
            )
    roc_axes.set(
        xscale="log",
        xlim=(left, 1.0),
        ylim=(0.0, 1.01),
        xlabel="false accept rate (FAR)",
        ylabel="true accept rate (TAR)",
        title="ROC" if alone else "ROC (dots: each model's default threshold)",
    )
    roc_axes.grid(True, which="both", alpha=0.3)
    roc_axes.legend(loc="lower right")
    histogram_axes.set(xlabel="distance", ylabel="density", title="Distances")
    histogram_axes.legend(fontsize="medium" if alone else "small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
