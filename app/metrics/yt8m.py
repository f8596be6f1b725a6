"""YouTube-8M metrics: GAP, MAP, Hit@1, PERR, as the starter code's `eval_util.py` defines them.

Inputs are `scores (N, K)` (probabilities or logits; only their order matters, except PERR's
`score > 0` rule) and `labels (N, K)` (a label is positive when > 0). All functions are vectorized
numpy and return Python floats.

- Hit@1: mean over videos of label[argmax score] (ties: the lowest class index, like `np.argmax`).
- PERR: a video with n positive labels scores (positives among its top-n classes with score > 0) / n;
  a video without labels scores 0; averaged over all videos.
- GAP: each video's top-k (score, positive) pairs are pooled and ranked by score;
  GAP = sum of the precision at every positive in the ranking / the number of positive labels of
  ALL videos (positives outside any top-k count in the denominator, never in the numerator).
- MAP: the same average precision per class over that class's entries in the pooled top-k lists,
  divided by the class's positive-label count, averaged over the classes that have at least one
  positive label (`filter_empty_classes=True`, the starter's `MeanAveragePrecisionCalculator`).

Ties. The starter picks a video's top k with `np.argpartition` (an arbitrary choice among equal
scores) and ranks the pooled list after a seeded shuffle, so its value under ties depends on batch
size and heap layout. Here: within a video, equal scores are taken lowest class index first; in
the pooled ranking, equal scores get the expected precision over all orders of the tied entries
(the mean of what the starter's random shuffle samples). Without ties both agree exactly.

`YT8MEvaluator` accumulates the same numbers batch by batch for large evaluations;
`write_kaggle_csv` writes predictions in the starter's `inference.py` format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from preprocessing.fileio import atomic_open
from preprocessing.names import printable_text, spreadsheet_safe

TOP_K = 20  # entries per video in the GAP / MAP pools and in the Kaggle file


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    positives = np.asarray(labels) > 0
    assert scores.ndim == 2 and scores.shape == positives.shape, (
        f"scores and labels must both be (N, K), got {scores.shape} and {positives.shape}"
    )
    return scores, positives


def _top_mask(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bool (N, K) marking each row's `counts[i]` highest scores; ties go to the lower class index."""
    N, K = scores.shape
    counts = np.clip(np.asarray(counts, np.int64), 0, K)
    kmax = int(counts.max()) if N else 0
    if kmax == 0:
        return np.zeros((N, K), bool)
    # The counts[i]-th largest score of each row: the threshold.
    top = -np.partition(-scores, kmax - 1, axis=1)[:, :kmax]  # (N, kmax), unordered
    top = -np.sort(-top, axis=1)  # (N, kmax) descending
    thr = top[np.arange(N), np.maximum(counts, 1) - 1]  # (N,)
    above = scores > thr[:, None]
    tied = scores == thr[:, None]
    room = counts - above.sum(axis=1)  # tied entries still to take, lowest index first
    mask = above | tied
    crowded = np.flatnonzero(tied.sum(axis=1) > room)  # rows where not every tied entry fits
    if len(crowded):
        sub = tied[crowded]
        mask[crowded] = above[crowded] | (sub & (np.cumsum(sub, axis=1) <= room[crowded, None]))
    mask[counts == 0] = False
    return mask


def hit_at_1(scores: np.ndarray, labels: np.ndarray) -> float:
    scores, positives = _check(scores, labels)
    if not len(scores):
        return 0.0
    return float(positives[np.arange(len(scores)), scores.argmax(axis=1)].mean())


def perr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Precision at equal recall rate, averaged over all videos (0 for a video without labels)."""
    return float(_perr_per_video(*_check(scores, labels)).mean()) if len(scores) else 0.0


def _perr_per_video(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    n = positives.sum(axis=1)  # (N,)
    hits = (_top_mask(scores, n) & positives & (scores > 0)).sum(axis=1)
    return np.where(n > 0, hits / np.maximum(n, 1), 0.0)


def _pool(scores: np.ndarray, positives: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's top-k entries: (score, is_positive, class index), flattened."""
    assert top_k > 0, "top_k must be positive"
    mask = _top_mask(scores, np.full(len(scores), min(top_k, scores.shape[1])))
    _, cls = np.nonzero(mask)
    return scores[mask], positives[mask], cls


def _expected_precision_sums(
    segment: np.ndarray, scores: np.ndarray, positives: np.ndarray, num_segments: int
) -> np.ndarray:
    """Per segment (class, or one segment for GAP): the sum of precision@rank over its positives,
    each segment ranked by descending score, ties averaged over all orders of the tied entries.

    A tie group at ranks s+1..s+m holding p positives, with P positives ranked before it, adds
    sum_{r=1..m} (p/m) * (P + 1 + (r-1)(p-1)/(m-1)) / (s+r): position r holds a positive with
    probability p/m, and then the other r-1 tied entries above it hold (r-1)(p-1)/(m-1) positives
    on average. Without ties (m = 1) this is the usual sum of (P + 1) / rank over positives.
    """
    out = np.zeros(num_segments)
    if not len(scores):
        return out
    order = np.lexsort((-scores.astype(np.float64), segment))  # by segment, then score descending
    seg, s, pos = segment[order], scores[order], positives[order].astype(np.float64)
    n = len(s)
    idx = np.arange(n)
    seg_start_flag = np.r_[True, seg[1:] != seg[:-1]]
    grp_start_flag = seg_start_flag | np.r_[True, s[1:] != s[:-1]]
    seg_start = np.maximum.accumulate(np.where(seg_start_flag, idx, 0))  # (n,) index where the segment begins
    grp_id = np.cumsum(grp_start_flag) - 1  # (n,)
    grp_first = np.flatnonzero(grp_start_flag)  # (G,)
    grp_size = np.diff(np.r_[grp_first, n])  # m, (G,)
    cum_pos = np.r_[0.0, np.cumsum(pos)]  # positives before index i: cum_pos[i]
    grp_pos = cum_pos[grp_first + grp_size] - cum_pos[grp_first]  # p, (G,)
    before = cum_pos[grp_first] - cum_pos[seg_start[grp_first]]  # P, (G,)
    ranked_before = grp_first - seg_start[grp_first]  # s, (G,)
    m, p, P, s0 = grp_size[grp_id], grp_pos[grp_id], before[grp_id], ranked_before[grp_id]
    r = idx - grp_first[grp_id] + 1  # 1-based position inside the tie group
    term = (p / m) * (P + 1 + (r - 1) * (p - 1) / np.maximum(m - 1, 1)) / (s0 + r)
    np.add.at(out, seg, term)
    return out


def gap(scores: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> float:
    """Global average precision over the pooled top-k predictions of every video."""
    scores, positives = _check(scores, labels)
    total = int(positives.sum())
    if total == 0:
        return 0.0
    s, pos, _ = _pool(scores, positives, top_k)
    return float(_expected_precision_sums(np.zeros(len(s), np.int64), s, pos, 1)[0] / total)


def mean_ap(scores: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> float:
    """The starter's MAP: per-class AP over the pooled top-k lists, mean over classes with positives."""
    scores, positives = _check(scores, labels)
    s, pos, cls = _pool(scores, positives, top_k)
    return _map_from_pool(s, pos, cls, positives.sum(axis=0))


def _map_from_pool(s: np.ndarray, pos: np.ndarray, cls: np.ndarray, class_positives: np.ndarray) -> float:
    K = len(class_positives)
    has = class_positives > 0
    if not has.any():
        return 0.0
    sums = _expected_precision_sums(cls, s, pos, K)
    return float((sums[has] / class_positives[has]).mean())


def evaluate(scores: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> dict[str, float]:
    """All four metrics at once: keys gap, map, hit_at_1, perr, num_videos."""
    ev = YT8MEvaluator(num_classes=np.shape(scores)[1], top_k=top_k)
    ev.update(scores, labels)
    return ev.result()


class YT8MEvaluator:
    """Streaming evaluation: `update(scores, labels)` per batch, `result()` at the end.

    Keeps only each video's top-k pooled entries and per-class positive counts, so memory grows by
    k entries per video. The result equals the one-shot functions on the concatenated arrays.
    """

    def __init__(self, *, num_classes: int, top_k: int = TOP_K) -> None:
        assert top_k > 0, "top_k must be positive"
        self.num_classes = num_classes
        self.top_k = top_k
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._hits = 0.0
        self._perr = 0.0
        self._class_pos = np.zeros(self.num_classes, np.int64)
        self._pool: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        scores, positives = _check(scores, labels)
        assert scores.shape[1] == self.num_classes, f"expected {self.num_classes} classes, got {scores.shape[1]}"
        if not len(scores):
            return
        self._n += len(scores)
        self._hits += float(positives[np.arange(len(scores)), scores.argmax(axis=1)].sum())
        self._perr += float(_perr_per_video(scores, positives).sum())
        self._class_pos += positives.sum(axis=0)
        self._pool.append(_pool(scores, positives, self.top_k))

    def result(self) -> dict[str, float]:
        if self._n == 0:
            return {"gap": 0.0, "map": 0.0, "hit_at_1": 0.0, "perr": 0.0, "num_videos": 0}
        s, pos, cls = (np.concatenate(parts) for parts in zip(*self._pool))
        total = int(self._class_pos.sum())
        g = _expected_precision_sums(np.zeros(len(s), np.int64), s, pos, 1)[0] / total if total else 0.0
        return {
            "gap": float(g),
            "map": _map_from_pool(s, pos, cls, self._class_pos),
            "hit_at_1": self._hits / self._n,
            "perr": self._perr / self._n,
            "num_videos": self._n,
        }


def kaggle_rows(
    ids: Sequence[str], scores: np.ndarray, *, class_indices: Sequence[int] | None = None, top_k: int = TOP_K
) -> list[str]:
    """`id,label score label score ...` lines (no newline): the top-k labels by descending score,
    scores as `%f` like the starter's inference.py; ties list the lower column first."""
    scores = np.asarray(scores)
    assert scores.ndim == 2 and len(ids) == len(scores), "need one score row per id"
    labels = np.arange(scores.shape[1]) if class_indices is None else np.asarray(class_indices)
    assert len(labels) == scores.shape[1], "class_indices must name every score column"
    k = min(top_k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    rows = []
    for vid, row, cols in zip(ids, scores, order):
        pairs = " ".join(f"{int(labels[c])} {float(row[c]):f}" for c in cols)  # "%i %f"
        rows.append(f"{_id_cell(vid)},{pairs}")
    return rows


def _id_cell(video_id: str) -> str:
    """A video id as a CSV cell: one printable line, never a formula, quoted when it holds , or "."""
    cell = spreadsheet_safe(printable_text(str(video_id)))
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"') else cell


def write_kaggle_csv(
    path: str | os.PathLike,
    ids: Sequence[str],
    scores: np.ndarray,
    *,
    class_indices: Sequence[int] | None = None,
    top_k: int = TOP_K,
) -> None:
    """Write a Kaggle submission: header `VideoId,LabelConfidencePairs`, one row per video (atomic)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write("VideoId,LabelConfidencePairs\n")
        for row in kaggle_rows(ids, scores, class_indices=class_indices, top_k=top_k):
            f.write(row + "\n")
