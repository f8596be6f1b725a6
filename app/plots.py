"""PNG plots of a training run (matplotlib, no display needed): curves and a confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from preprocessing.fileio import atomic_path  # noqa: E402


def plot_curves(path: str | os.PathLike, rows: Sequence[dict], *, title: str = "") -> Path:
    """Loss (left) and every other validation metric (right) per epoch, from metrics.csv rows.

    `rows` are dicts with "epoch" and numeric columns such as train_loss, val_loss, val_accuracy.
    """
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    columns = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    for key in columns:
        values = [_number(r.get(key)) for r in rows]
        if all(np.isnan(v) for v in values):
            continue
        if key.endswith("loss"):
            ax_loss.plot(epochs, values, marker=".", label=key)
        elif key.startswith("val_"):
            ax_metric.plot(epochs, values, marker=".", label=key)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel="score", title="validation")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(
    path: str | os.PathLike, confusion: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str = ""
) -> Path:
    """Row-normalized confusion matrix (rows: true class, columns: predicted) with counts in cells."""
    cm = np.asarray(confusion, dtype=float)  # (K, K)
    K = len(class_names)
    assert cm.shape == (K, K), f"confusion is {cm.shape}, expected ({K}, {K})"
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # (K, K) row-normalized
    side = max(4.0, 0.45 * K + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(K), class_names, rotation=60, ha="right")
    ax.set_yticks(range(K), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if K <= 30:
        for i in range(K):
            for j in range(K):
                if cm[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _number(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
