"""YouTube-8M metrics against hand-computed cases and a slow loop port of the starter's eval_util."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.metrics.yt8m import (
    YT8MEvaluator,
    evaluate,
    gap,
    hit_at_1,
    kaggle_rows,
    mean_ap,
    perr,
    write_kaggle_csv,
)

# ------------------------------------------------------------------------------------------------
# Slow references: the starter's algorithms written as plain loops (valid when no scores tie).


def _ref_ap(pred: list[float], actual: list[float], num_positives: float) -> float:
    """average_precision_calculator.ap_at_n with n=None and total_num_positives given."""
    if num_positives == 0:
        return 0.0
    order = sorted(range(len(pred)), key=lambda i: pred[i], reverse=True)
    ap, hits = 0.0, 0
    for rank, i in enumerate(order, start=1):
        if actual[i] > 0:
            hits += 1
            ap += hits / rank / num_positives
    return ap


def _ref_top_k(row: np.ndarray, k: int) -> list[int]:
    return sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]


def _ref_all(scores: np.ndarray, labels: np.ndarray, top_k: int = 20) -> dict[str, float]:
    N, K = scores.shape
    hits = [labels[i, int(np.argmax(scores[i]))] > 0 for i in range(N)]
    perrs = []
    for i in range(N):
        n = int((labels[i] > 0).sum())
        if n == 0:
            perrs.append(0.0)
            continue
        top = _ref_top_k(scores[i], n)
        perrs.append(sum(1 for c in top if scores[i, c] > 0 and labels[i, c] > 0) / n)
    per_class_pred: list[list[float]] = [[] for _ in range(K)]
    per_class_act: list[list[float]] = [[] for _ in range(K)]
    for i in range(N):
        for c in _ref_top_k(scores[i], min(top_k, K)):
            per_class_pred[c].append(float(scores[i, c]))
            per_class_act[c].append(float(labels[i, c] > 0))
    positives = [(labels[:, c] > 0).sum() for c in range(K)]
    flat_pred = [p for lst in per_class_pred for p in lst]
    flat_act = [a for lst in per_class_act for a in lst]
    aps = [_ref_ap(per_class_pred[c], per_class_act[c], positives[c]) for c in range(K) if positives[c] > 0]
    return {
        "gap": _ref_ap(flat_pred, flat_act, sum(positives)),
        "map": float(np.mean(aps)) if aps else 0.0,
        "hit_at_1": float(np.mean(hits)),
        "perr": float(np.mean(perrs)),
    }


def _random_case(rng: np.random.Generator, N: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random((N, K)) < 3.0 / K).astype(np.float32)
    labels[rng.random(N) < 0.1] = 0  # some videos without labels
    scores = rng.random((N, K)) + 0.5 * labels * rng.random((N, K))  # informative, no ties
    return scores, labels


@pytest.mark.parametrize("N,K,top_k", [(200, 50, 20), (64, 12, 20), (300, 100, 5)])
def test_metrics_match_slow_reference(N, K, top_k):
    scores, labels = _random_case(np.random.default_rng(N + K), N, K)
    ref = _ref_all(scores, labels, top_k)
    got = evaluate(scores, labels, top_k=top_k)
    for key in ("gap", "map", "hit_at_1", "perr"):
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key
    assert gap(scores, labels, top_k) == pytest.approx(ref["gap"], abs=1e-6)
    assert mean_ap(scores, labels, top_k) == pytest.approx(ref["map"], abs=1e-6)
    assert 0 < ref["gap"] < 1 and 0 < ref["map"] < 1


def test_streaming_equals_one_shot():
    scores, labels = _random_case(np.random.default_rng(7), 257, 40)
    ev = YT8MEvaluator(num_classes=40, top_k=20)
    for start in range(0, 257, 50):
        ev.update(scores[start : start + 50], labels[start : start + 50])
    one = evaluate(scores, labels)
    streamed = ev.result()
    assert streamed["num_videos"] == 257
    for key in ("gap", "map", "hit_at_1", "perr"):
        assert streamed[key] == pytest.approx(one[key], abs=1e-12), key


def test_hand_computed_small_case():
    # Three videos, four classes, top_k = 2.
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.7, 0.6, 0.1], [0.5, 0.4, 0.3, 0.95]])
    labels = np.array([[1, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    # Hit@1: video 0 top class 0 (pos), video 1 top class 1 (neg), video 2 no labels -> 1/3.
    assert hit_at_1(scores, labels) == pytest.approx(1 / 3)
    # PERR: video 0 has 2 labels, top-2 = {0, 1} -> 1/2; video 1: top-1 = {1} -> 0; video 2 -> 0.
    assert perr(scores, labels) == pytest.approx((0.5 + 0 + 0) / 3)
    # Pool (top 2 each): 0.9+ 0.8- | 0.7- 0.6+ | 0.95- 0.5-. Ranked: .95- .9+ .8- .7- .6+ .5-.
    # Positives at ranks 2 and 5; 3 positive labels in all: (1/2 + 2/5) / 3.
    assert gap(scores, labels, top_k=2) == pytest.approx((1 / 2 + 2 / 5) / 3)
    # Per class, classes with positives: 0 and 2. Class 0 pool: 0.9+ 0.5- -> 1/1 / 1 = 1.
    # Class 2 pool: 0.6+ (video 0's 0.1 is outside its top 2) -> (1/1) / 2 positives = 0.5.
    assert mean_ap(scores, labels, top_k=2) == pytest.approx((1.0 + 0.5) / 2)


def test_fewer_classes_than_top_k():
    scores = np.array([[0.3, 0.7], [0.6, 0.4]])
    labels = np.array([[1, 0], [1, 1]])
    # Every entry is pooled: .7- .6+ .4+ .3+ -> (1/2 + 2/3 + 3/4) / 3 positives.
    assert gap(scores, labels, top_k=20) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    # Class 0: .6+ .3+ -> (1 + 1) / 2 = 1; class 1: .7- .4+ -> (1/2) / 1.
    assert mean_ap(scores, labels) == pytest.approx((1 + 0.5) / 2)


def test_no_labels_anywhere():
    scores = np.random.default_rng(0).random((5, 8))
    labels = np.zeros((5, 8))
    assert gap(scores, labels) == 0.0 and mean_ap(scores, labels) == 0.0
    assert hit_at_1(scores, labels) == 0.0 and perr(scores, labels) == 0.0


def test_perr_needs_positive_scores():
    # The starter counts a hit only when its score is > 0 (logits below zero never hit).
    scores = np.array([[-1.0, -2.0, -3.0]])
    labels = np.array([[1, 0, 0]])
    assert perr(scores, labels) == 0.0 and hit_at_1(scores, labels) == 1.0


def test_ties_within_a_video_take_lower_class_index():
    scores = np.array([[0.5, 0.5, 0.5, 0.1]])
    assert hit_at_1(scores, np.array([[1, 0, 0, 0]])) == 1.0
    assert hit_at_1(scores, np.array([[0, 1, 0, 0]])) == 0.0
    # Two labels (classes 1 and 2): top-2 = classes 0, 1 -> one hit of two.
    assert perr(scores, np.array([[0, 1, 1, 0]])) == 0.5
    # Top-2 pool = classes 0 and 1 (scores tie): class 2's positive is left out.
    g = gap(scores, np.array([[0, 0, 1, 0]]), top_k=2)
    assert g == 0.0


def _mean_over_orders(pred: list[float], act: list[float], num_positives: int) -> float:
    """Average the starter's AP over every order of the tied entries (brute force)."""
    idx = list(range(len(pred)))
    total, count = 0.0, 0
    for perm in itertools.permutations(idx):
        ordered = sorted(perm, key=lambda i: -pred[i])  # stable: ties keep the permutation's order
        hits, ap = 0, 0.0
        for rank, i in enumerate(ordered, start=1):
            if act[i] > 0:
                hits += 1
                ap += hits / rank
        total += ap / num_positives
        count += 1
    return total / count


def test_pooled_ties_are_averaged_over_orders():
    # Hand case: pooled .9- .5+ .5- (one video, top 3) plus 1 positive outside the pool.
    scores = np.array([[0.9, 0.5, 0.5, 0.1]])
    labels = np.array([[0, 1, 0, 1]])
    # Orders of the tie: (+,-): precision 1/2 at rank 2; (-,+): 1/3 at rank 3. Mean 5/12, over 2 positives.
    assert gap(scores, labels, top_k=3) == pytest.approx((1 / 2 + 1 / 3) / 2 / 2)
    # Brute force over all orders on a random case with many ties across videos.
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, size=(3, 4)).astype(np.float64) / 2
    labels = (rng.random((3, 4)) < 0.5).astype(np.float64)
    labels[0, 0] = 1
    pool_s, pool_a = [], []
    for i in range(3):
        for c in _ref_top_k(scores[i], 2):
            pool_s.append(scores[i, c])
            pool_a.append(labels[i, c])
    want = _mean_over_orders(pool_s, pool_a, int(labels.sum()))
    assert gap(scores, labels, top_k=2) == pytest.approx(want, abs=1e-12)


def test_kaggle_csv_format(tmp_path):
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.7]], np.float32)
    rows = kaggle_rows(["a", "b"], scores, top_k=2)
    assert rows == ["a,1 0.900000 2 0.500000", "b,2 0.700000 0 0.300000"]
    path = tmp_path / "sub.csv"
    write_kaggle_csv(path, ["a", "b"], scores, class_indices=[10, 20, 30], top_k=20)
    lines = path.read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    assert lines[1] == "a,20 0.900000 30 0.500000 10 0.100000"
    assert len(lines) == 3


def test_engine_scores_logits_as_probabilities():
    """The training engine holds logits; PERR must see them as probabilities (all > 0)."""
    from app.train import score

    logits = np.array([[-3.0, -1.0, -5.0], [2.0, -4.0, -2.0]])  # every true label below p = 0.5 in row 0
    labels = np.array([[0, 1, 0], [1, 0, 1]])
    got = score(logits, labels, class_names=["a", "b", "c"], multi_label=True, dataset="yt8m")
    probs = 1 / (1 + np.exp(-logits))
    assert got["perr"] == pytest.approx(1.0)  # row 0's top 1 and row 1's top 2 are their labels (logits: 0.25)
    assert got["perr"] == pytest.approx(perr(probs, labels))
    assert got["gap"] == pytest.approx(gap(probs, labels))
