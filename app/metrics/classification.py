"""Clip classification metrics (scikit-learn): accuracy, macro MAP, per-class report, confusion matrix.

Single-label data (UCF11, Celebrities, the demo set) is scored by accuracy, as in the TT-RNN paper;
multi-label data (Hollywood2) by macro mean average precision over classes, the paper's "MAP".
Scores are whatever the model returns per class (logits or probabilities): every metric here
depends only on their order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    classification_report,
    confusion_matrix,
)


def accuracy(*, labels: np.ndarray, scores: np.ndarray) -> float:
    """Share of clips whose top-scoring class is the label. labels (N,) int, scores (N, K)."""
    assert scores.ndim == 2 and len(labels) == len(scores), "labels (N,) and scores (N, K) please"
    return float(accuracy_score(labels, scores.argmax(axis=1))) if len(labels) else float("nan")


def macro_map(*, targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes of average precision; classes without a positive clip are skipped.

    targets (N, K) 0/1 multi-hot (or (N,) class indices, turned one-hot), scores (N, K).
    """
    aps = per_class_ap(targets=targets, scores=scores)
    valid = [v for v in aps if not np.isnan(v)]
    return float(np.mean(valid)) if valid else float("nan")


def per_class_ap(*, targets: np.ndarray, scores: np.ndarray) -> list[float]:
    """Average precision of each class (NaN where the class has no positive clip)."""
    targets = _multi_hot(targets, scores.shape[1])
    out = []
    for k in range(scores.shape[1]):
        if targets[:, k].sum() == 0:
            out.append(float("nan"))
        else:
            out.append(float(average_precision_score(targets[:, k], scores[:, k])))
    return out


def classification_metrics(
    *, targets: np.ndarray, scores: np.ndarray, class_names: list[str], multi_label: bool
) -> dict[str, Any]:
    """All metrics of one split as a JSON-able dict.

    Single-label: accuracy, macro_map, per_class (precision/recall/f1/support/ap), confusion
    (rows = true class, columns = predicted). Multi-label: map, top1 (the top class is one of the
    clip's labels), per_class with ap and the report at a 0.5 sigmoid threshold; no confusion matrix.
    """
    K = len(class_names)
    assert scores.shape[1] == K, f"scores have {scores.shape[1]} classes, class_names {K}"
    n = len(scores)
    aps = per_class_ap(targets=targets, scores=scores) if n else [float("nan")] * K
    valid_aps = [v for v in aps if not np.isnan(v)]
    out: dict[str, Any] = {"num_clips": int(n)}
    if multi_label:
        targets = _multi_hot(targets, K)
        predicted = (scores > 0).astype(int)  # logit > 0 <=> sigmoid > 0.5
        top = scores.argmax(axis=1) if n else np.zeros(0, dtype=int)
        out["map"] = float(np.mean(valid_aps)) if valid_aps else float("nan")
        out["top1"] = float(targets[np.arange(n), top].mean()) if n else float("nan")
        report = classification_report(
            targets, predicted, labels=list(range(K)), target_names=class_names,
            output_dict=True, zero_division=0,
        )
    else:
        labels = np.asarray(targets).astype(int)
        predicted = scores.argmax(axis=1)
        out["accuracy"] = accuracy(labels=labels, scores=scores)
        out["macro_map"] = float(np.mean(valid_aps)) if valid_aps else float("nan")
        report = classification_report(
            labels, predicted, labels=list(range(K)), target_names=class_names,
            output_dict=True, zero_division=0,
        )
        out["confusion"] = confusion_matrix(labels, predicted, labels=list(range(K))).tolist()
    out["per_class"] = {
        name: {
            "precision": float(report[name]["precision"]),
            "recall": float(report[name]["recall"]),
            "f1": float(report[name]["f1-score"]),
            "support": int(report[name]["support"]),
            "ap": aps[k],
        }
        for k, name in enumerate(class_names)
    }
    return out


def _multi_hot(targets: np.ndarray, K: int) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim == 1:  # class indices -> one-hot
        one_hot = np.zeros((len(targets), K), dtype=int)
        one_hot[np.arange(len(targets)), targets.astype(int)] = 1
        return one_hot
    return (targets > 0.5).astype(int)
