"""Seeded mistakes in the clip metrics (app/metrics/classification.py) and the tests that catch them
(tests/test_guards_train.py, hand-computed cases and a hand-written AP loop)."""

from __future__ import annotations

from tests.robustness.mutations import Mutation

FILE = "app/metrics/classification.py"
GUARDS = "tests/test_guards_train.py"

MUTATIONS = (
    Mutation(
        "a class without positives scores AP 0 (pulls the MAP down)", FILE,
        'out.append(float("nan"))', "out.append(0.0)",
        (GUARDS, "-k", "macro_map_hand_case"),
    ),
    Mutation(
        "AP from the top-1 prediction instead of the scores", FILE,
        "average_precision_score(targets[:, k], scores[:, k])",
        "average_precision_score(targets[:, k], scores.argmax(axis=1) == k)",
        (GUARDS, "-k", "hand_case or hand_written"),
    ),
    Mutation(
        "accuracy is a count, not a share", FILE,
        "float(accuracy_score(labels, scores.argmax(axis=1)))",
        "float(accuracy_score(labels, scores.argmax(axis=1), normalize=False))",
        (GUARDS, "-k", "accuracy_hand_case"),
    ),
    Mutation(
        "confusion matrix transposed (rows = predicted)", FILE,
        "confusion_matrix(labels, predicted, labels=list(range(K)))",
        "confusion_matrix(predicted, labels, labels=list(range(K)))",
        (GUARDS, "-k", "single_label_report"),
    ),
    Mutation(
        "a class never seen drops out of the confusion matrix", FILE,
        "confusion_matrix(labels, predicted, labels=list(range(K)))",
        "confusion_matrix(labels, predicted)",
        (GUARDS, "-k", "single_label_report"),
    ),
    Mutation(
        "per-class precision reports the recall", FILE,
        '"precision": float(report[name]["precision"]),', '"precision": float(report[name]["recall"]),',
        (GUARDS, "-k", "single_label_report"),
    ),
    Mutation(
        "multi-label logits thresholded at 0.5 as if probabilities", FILE,
        "predicted = (scores > 0).astype(int)", "predicted = (scores > 0.5).astype(int)",
        (GUARDS, "-k", "multi_label_threshold"),
    ),
    Mutation(
        "multi-label MAP counts classes without positives as 0", FILE,
        'out["map"] = float(np.mean(valid_aps)) if valid_aps else float("nan")',
        'out["map"] = float(np.mean(np.nan_to_num(aps)))',
        (GUARDS, "-k", "multi_label_threshold"),
    ),
    Mutation(
        "top1 compares with the first label only", FILE,
        "float(targets[np.arange(n), top].mean())", "float((targets.argmax(axis=1) == top).mean())",
        (GUARDS, "-k", "multi_label_threshold"),
    ),
)
