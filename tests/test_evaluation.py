"""The evaluation figures against hand-worked cases and brute-force references (no models, no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facedb.proof import evaluation
from facedb.proof.evaluation import (
    auc,
    eer,
    identification,
    lfw_folds,
    lfw_header_folds,
    lfw_image_path,
    pairs_from_labels,
    parse_lfw_pairs,
    roc_points,
    seeded_folds,
    verification,
    wilson_interval,
)


def _pairs(genuine, impostor):
    distances = np.concatenate([genuine, impostor]).astype(float)
    same = np.arange(distances.size) < len(genuine)
    return distances, same


# --- folds ---------------------------------------------------------------------------------------


def test_lfw_folds_split_in_order_like_kfold():
    assert lfw_folds(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    folds = lfw_folds(6000)  # pairs.txt: ten blocks of 600
    assert np.bincount(folds).tolist() == [600] * 10
    assert np.all(np.diff(folds) >= 0)
    assert np.bincount(lfw_folds(23)).tolist() == [3, 3, 3] + [2] * 7


def test_lfw_folds_refuse_fewer_pairs_than_folds():
    with pytest.raises(ValueError):
        lfw_folds(9, 10)


def test_seeded_folds_are_a_shuffled_kfold_fixed_by_the_seed():
    folds = seeded_folds(103, seed=4)
    assert np.array_equal(folds, seeded_folds(103, seed=4))
    assert not np.array_equal(folds, seeded_folds(103, seed=5))
    assert np.bincount(folds).tolist() == np.bincount(lfw_folds(103)).tolist()
    assert np.any(np.diff(folds) < 0)


# --- AUC, EER, ROC ---------------------------------------------------------------------------------


def _brute_force_auc(distances, same):
    genuine, impostor = distances[same], distances[~same]
    farther = (impostor[:, None] > genuine[None, :]).sum() + 0.5 * (impostor[:, None] == genuine[None, :]).sum()
    return farther / (genuine.size * impostor.size)


def test_auc_matches_the_pairwise_count_with_ties():
    rng = np.random.default_rng(1)
    distances, same = _pairs(np.round(rng.normal(0.8, 0.2, 150), 1), np.round(rng.normal(1.1, 0.2, 230), 1))
    assert auc(distances, same) == pytest.approx(_brute_force_auc(distances, same), abs=1e-12)


def test_auc_of_a_single_tie_is_one_half():
    assert auc(*_pairs([0.5], [0.5])) == 0.5
    assert auc(*_pairs([0.5], [0.4])) == 0.0


def test_eer_on_known_cases():
    # ROC (FAR, FRR): (0, 1) (0, 2/3) (0, 1/3) (1/2, 1/3): crosses at FRR = 1/3 on a flat stretch.
    assert eer(*_pairs([0.1, 0.2, 0.6], [0.4, 0.5])) == pytest.approx(1 / 3)
    # A genuine and an impostor tie at 0.3: (0, 1/2) -> (1/2, 0), crossing halfway at 1/4.
    assert eer(*_pairs([0.1, 0.3], [0.3, 0.5])) == pytest.approx(0.25)
    assert eer(*_pairs([0.1, 0.2, 0.3, 0.4], [0.35, 0.5, 0.6, 0.7])) == pytest.approx(0.25)
    assert eer(*_pairs([0.1, 0.2], [0.5, 0.6])) == 0.0


def test_roc_points_accept_at_or_below_each_distinct_distance():
    far, tar, thresholds = roc_points(np.array([0.1, 0.2, 0.2, 0.4]), np.array([True, False, True, False]))
    assert thresholds.tolist() == [-np.inf, 0.1, 0.2, 0.4]
    assert far.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tar.tolist() == [0.0, 0.5, 1.0, 1.0]


# --- verification -------------------------------------------------------------------------------


def test_verification_on_perfectly_separated_distances():
    rng = np.random.default_rng(2)
    genuine, impostor = rng.uniform(0.2, 0.8, 300), rng.uniform(1.2, 1.8, 300)
    distances, same = _pairs(genuine, impostor)
    order = rng.permutation(distances.size)
    result = verification(distances[order], same[order], lfw_folds(distances.size))
    assert set(result) == {
        "pairs",
        "genuine_pairs",
        "impostor_pairs",
        "accuracy",
        "accuracy_std",
        "auc",
        "val_at_far_0.001",
        "val_std",
        "far",
        "eer",
        "best_threshold",
    }
    assert (result["pairs"], result["genuine_pairs"], result["impostor_pairs"]) == (600, 300, 300)
    assert result["accuracy"] == 1.0 and result["accuracy_std"] == 0.0
    assert result["auc"] == 1.0 and result["eer"] == 0.0
    # 270 training impostors cannot show FAR 1e-3: the threshold is interpolated a little way into
    # the first FAR step (as FaceNet's is), so a held-out impostor may just be accepted.
    assert result["val_at_far_0.001"] == 1.0 and result["far"] < 0.01
    # The first grid value that accepts every genuine pair (d < t), as np.argmax picks it.
    grid = np.arange(0, 4, 0.01)
    assert result["best_threshold"] == grid[np.argmax(grid > genuine.max())]


def test_verification_on_identical_distributions_is_chance():
    rng = np.random.default_rng(3)
    distances, same = _pairs(rng.normal(1.0, 0.2, 1500), rng.normal(1.0, 0.2, 1500))
    order = rng.permutation(distances.size)
    result = verification(distances[order], same[order], lfw_folds(distances.size))
    assert 0.44 < result["accuracy"] < 0.56
    assert 0.46 < result["auc"] < 0.54
    assert 0.45 < result["eer"] < 0.55


def _val_case():
    """Ten identical folds: 5 genuine, 1 impostor at 0.5055 and 99 at 1.5005 each.

    The other nine folds' FAR on the 0.001 grid is 0 up to t = 0.505 and 0.01 from 0.506 to 1.500.
    """
    block_distances, block_same = _pairs([0.3, 0.5, 0.504, 0.5053, 0.7], [0.5055] + [1.5005] * 99)
    distances = np.tile(block_distances, 10)
    return distances, np.tile(block_same, 10), np.repeat(np.arange(10), block_distances.size)


def test_val_interpolates_between_the_edges_of_the_far_steps():
    # FAR 0.002 lies a fifth of the way from (0, t=0.505) to (0.01, t=0.506): t = 0.5052, which
    # accepts the genuine pairs at 0.3, 0.5 and 0.504 but not 0.5053. (Interpolating to the far
    # end of the 0.01 step, t = 1.500, would give 0.8.)
    result = verification(*_val_case(), far_target=0.002)
    assert result["val_at_far_0.002"] == pytest.approx(0.6)
    assert result["val_std"] == pytest.approx(0.0, abs=1e-12)
    assert result["far"] == 0.0


def test_val_on_a_far_step_takes_its_last_threshold():
    result = verification(*_val_case(), far_target=0.01)
    assert result["val_at_far_0.01"] == 1.0
    assert result["far"] == pytest.approx(0.01)


def test_verification_holds_out_each_fold():
    # Fold 1 alone is shifted. Held out, it gets the threshold folds 0 and 2 choose (0.41, the first
    # grid value that separates them) and loses its three genuine pairs; folds 0 and 2, trained
    # with fold 1 in, get 1.01 and stay perfect.
    genuine, impostor = [0.2, 0.3, 0.4], [1.2, 1.3, 1.4]
    shifted = [0.9, 0.95, 1.0], [1.6, 1.7, 1.8]
    distances = np.concatenate([genuine, impostor, *shifted, genuine, impostor])
    same = np.tile(np.repeat([True, False], 3), 3)
    folds = np.repeat([0, 1, 2], 6)
    result = verification(distances, same, folds)
    assert result["accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)


def test_verification_refuses_one_class_only():
    with pytest.raises(ValueError, match="genuine"):
        verification(np.array([1.0, 1.2]), np.array([False, False]), np.array([0, 1]))
    with pytest.raises(ValueError, match="impostor"):
        verification(np.array([1.0, 1.2]), np.array([True, True]), np.array([0, 1]))


# --- identification -----------------------------------------------------------------------------


def _on_circle(degrees):
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_identification_counts_the_nearest_identity():
    # A at 0 and 20 degrees, B at 90 and 100, C once at 25: A's photo at 20 is nearer C than A.
    vectors = _on_circle([0, 20, 90, 100, 25])
    result = identification(vectors, ["A", "A", "B", "B", "C"], ranks=(1, 2, 5))
    assert result == {"queries": 4, "rank1": 0.75, "rank2": 1.0, "rank5": 1.0}


def test_identification_breaks_ties_by_label_order():
    vectors = _on_circle([0, 40, 40])  # the third photo is the second one's twin
    # "b" at 0 has "a" and "b" both at 40 degrees: "a" sorts first and wins.
    assert identification(vectors, ["b", "b", "a"])["rank1"] == 0.0
    assert identification(vectors, ["a", "a", "b"])["rank1"] == 0.5


def _brute_force_ranks(vectors, labels):
    distances = np.linalg.norm(vectors[:, None] - vectors[None, :], axis=2)
    names = sorted(set(labels))
    ranks = []
    for q, label in enumerate(labels):
        if labels.count(label) < 2:
            continue
        nearest = {
            name: min(distances[q, k] for k, other in enumerate(labels) if other == name and k != q)
            for name in names
            if any(other == name and k != q for k, other in enumerate(labels))
        }
        ranking = sorted(nearest, key=lambda name: (nearest[name], name))
        ranks.append(ranking.index(label) + 1)
    return np.array(ranks)


def test_identification_in_blocks_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(12, 8))
    labels = [f"p{rng.integers(12):02d}" for _ in range(90)]
    vectors = centres[[int(label[1:]) for label in labels]] + rng.normal(scale=0.9, size=(90, 8))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    monkeypatch.setattr(evaluation, "_QUERY_BLOCK", 7)  # many blocks, the last one short
    result = identification(vectors, labels, ranks=(1, 3, 5))
    ranks = _brute_force_ranks(vectors.astype(np.float64), labels)
    assert result["queries"] == ranks.size
    for k in (1, 3, 5):
        assert result[f"rank{k}"] == pytest.approx(np.mean(ranks <= k))
    assert 0 < result["rank1"] < result["rank5"] <= 1


def test_identification_needs_an_identity_with_two_photos():
    with pytest.raises(ValueError):
        identification(_on_circle([0, 90]), ["a", "b"])


# --- pairs_from_labels ----------------------------------------------------------------------------

LABELS = ["a"] * 4 + ["b"] * 3 + ["c"] + ["d"] * 2  # genuine 6 + 3 + 0 + 1 = 10, impostor 45 - 10 = 35


def _check_pairs(labels, i, j, same):
    labels = np.asarray(labels)
    assert np.all(i < j)
    assert np.all((labels[i] == labels[j]) == same)
    keys = set(zip(i.tolist(), j.tolist()))
    assert len(keys) == i.size


@pytest.mark.parametrize("ratio, impostors", [(1.0, 10), (2.5, 25), (10.0, 35)])
def test_pairs_from_labels_counts(ratio, impostors):
    i, j, same = pairs_from_labels(LABELS, seed=1, impostor_ratio=ratio)
    _check_pairs(LABELS, i, j, same)
    assert same.sum() == sum(math.comb(LABELS.count(name), 2) for name in set(LABELS))
    assert (~same).sum() == impostors


def test_pairs_from_labels_are_fixed_by_the_seed():
    first = pairs_from_labels(LABELS, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, pairs_from_labels(LABELS, seed=3)))
    samples = {tuple(pairs_from_labels(LABELS, seed=seed)[0][10:]) for seed in range(6)}
    assert len(samples) > 1


def test_pairs_from_labels_samples_a_large_set():
    rng = np.random.default_rng(0)
    labels = [f"person{k}" for k in rng.integers(0, 400, size=5000)]
    i, j, same = pairs_from_labels(labels, seed=7, impostor_ratio=2.0)
    _check_pairs(labels, i, j, same)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    assert same.sum() == int((counts * (counts - 1) // 2).sum())
    assert (~same).sum() == 2 * same.sum()


# --- intervals ------------------------------------------------------------------------------------


def test_wilson_interval_known_values():
    assert wilson_interval(0, 20) == pytest.approx([0.0, 0.1611], abs=1e-4)
    assert wilson_interval(10, 20) == pytest.approx([0.2993, 0.7007], abs=1e-4)


# --- LFW pairs files ------------------------------------------------------------------------------

PAIRS_TEXT = """10\t300
Abel_Pacheco\t1\t4
Ana_Maria-O'Neill_Jr.\t2\t12

Abdel_Madi_Shabneh\t1\tDean_Barker\t1
"""


def test_parse_lfw_pairs_with_header_and_both_kinds():
    assert parse_lfw_pairs(PAIRS_TEXT) == [
        ("Abel_Pacheco", 1, "Abel_Pacheco", 4),
        ("Ana_Maria-O'Neill_Jr.", 2, "Ana_Maria-O'Neill_Jr.", 12),
        ("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1),
    ]
    assert lfw_header_folds(PAIRS_TEXT) == 10


def test_parse_lfw_pairs_without_header_or_with_a_count():
    assert parse_lfw_pairs("Abel_Pacheco 1 4\n") == [("Abel_Pacheco", 1, "Abel_Pacheco", 4)]
    assert lfw_header_folds("Abel_Pacheco 1 4\n") is None
    assert parse_lfw_pairs("1100\nAbel_Pacheco 1 4\n") == [("Abel_Pacheco", 1, "Abel_Pacheco", 4)]
    assert lfw_header_folds("1100\nAbel_Pacheco 1 4\n") is None


@pytest.mark.parametrize("bad", ["Abel_Pacheco 1", "Abel_Pacheco one 4", "a 1 b 2 c", "10 300"])
def test_parse_lfw_pairs_names_the_bad_line(bad):
    with pytest.raises(ValueError, match="pairs file line 6:"):
        parse_lfw_pairs(PAIRS_TEXT + bad + "\n")


def test_lfw_image_path(tmp_path):
    assert lfw_image_path(tmp_path, "Abel_Pacheco", 4) == tmp_path / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg"


# --- plot -----------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(6)
    distances, same = _pairs(rng.normal(0.8, 0.15, 300), rng.normal(1.25, 0.12, 300))
    path = tmp_path / "roc.png"
    evaluation.plot(distances, same, 1.0, path, title="test")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


# --- why a pair was misjudged (pair_errors.py) ------------------------------------------------


def _views(**changes):
    from facedb.proof.pair_errors import Views

    base = dict(tutorial_box=np.zeros(2), tutorial_crop=np.zeros(2), tutorial=np.zeros(2), same_face=True, face_px=100)
    return Views(**(base | changes))


def test_the_misjudged_pairs_are_those_on_the_wrong_side_of_the_threshold():
    from facedb.proof.pair_errors import misjudged

    paths = ["a", "b", "c"]
    i, j = np.array([0, 0, 1, 1]), np.array([1, 2, 2, 2])
    distances = np.array([1.0, 0.99, 1.2, 0.5])
    same = np.array([True, False, True, True])
    errors = misjudged(paths, i, j, distances, same, 1.0)  # d <= 1.0 is the same person, as who judges
    assert errors == [
        {"left": "a", "right": "c", "same": False, "distance": 0.99},
        {"left": "b", "right": "c", "same": True, "distance": 1.2},
    ]


def test_each_cause_is_the_first_stage_whose_swap_alone_judges_the_pair_right():
    from facedb.proof.pair_errors import cause_of

    far, near = np.array([2.0, 0.0]), np.array([0.5, 0.0])  # 2.0 and 0.5 from np.zeros(2)
    same = True  # a same-person pair at 1.3 that facedb rejected at 1.0
    assert cause_of(1.0, same, _views(tutorial=None, tutorial_box=None), _views())[0] == "face not found by mtcnn"
    assert cause_of(1.0, same, _views(same_face=False), _views())[0] == "face chosen"
    assert cause_of(1.0, same, _views(tutorial_box=near, tutorial_crop=near), _views())[0] == "detection box"
    cause, distances = cause_of(1.0, same, _views(tutorial_box=far, tutorial_crop=near), _views())
    assert cause == "crop and margin" and distances == {"tutorial_box": 2.0, "tutorial_crop": 0.5, "tutorial": 0.0}
    every_swap_wrong = dict(tutorial_box=far, tutorial_crop=far, tutorial=far)
    assert cause_of(1.0, same, _views(**every_swap_wrong, face_px=40), _views())[0] == "small face"
    assert cause_of(1.0, same, _views(**every_swap_wrong), _views())[0] == "the model"
    # a different-people pair accepted at 0.5: a swap that moves it to 2.0 judges it right
    assert cause_of(1.0, False, _views(tutorial_box=near, tutorial_crop=far), _views())[0] == "crop and margin"


def test_the_tutorials_crop_is_the_box_and_16_px_on_each_side_clipped():
    from facedb.faces import Detection
    from facedb.proof.pair_errors import tutorial_crop

    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[84:116, 134:166] = 255  # the box 150..150+0 grown by 16 px: (134, 84) to (166, 116)
    crop = tutorial_crop(rgb, Detection((150.0, 100.0, 0.0, 0.0), ((0.0, 0.0),) * 5, 1.0))  # type: ignore[arg-type]
    assert crop.shape == (160, 160, 3) and crop.min() == 255
    edge = tutorial_crop(rgb, Detection((0.0, 0.0, 40.0, 40.0), ((0.0, 0.0),) * 5, 1.0))  # type: ignore[arg-type]
    assert edge.shape == (160, 160, 3)  # clipped at the photo's corner, not padded
