"""Checkpoint ensembles: average the class probabilities of several checkpoints.

    members = load_ensemble(["runs/yt8m_video_qrnn", "runs/yt8m_video_moe"])
    ids, probs = ensemble_predict(members, batches)        # batches of data.batch.Batch

Probabilities are sigmoid(logits) for multi-label checkpoints (YouTube-8M) and softmax(logits)
otherwise; the ensemble's prediction is their plain mean. Members must agree on class names,
multi-label-ness and input spec, so that one batch is valid input for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from app.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from data.batch import Batch


def load_ensemble(paths: Sequence[str | os.PathLike], *, map_location: str = "cpu") -> list[Checkpoint]:
    members = [load_checkpoint(p, map_location=map_location) for p in paths]
    check_compatible(members)
    return members


def check_compatible(members: Sequence[Checkpoint]) -> None:
    """Raise CheckpointError unless every member has the first one's classes, labels and input."""
    if not members:
        raise CheckpointError("an ensemble needs at least one checkpoint")
    first = members[0]
    for m in members[1:]:
        for what, a, b in (
            ("class names", m.class_names, first.class_names),
            ("multi_label", m.multi_label, first.multi_label),
            ("input spec", m.input_spec, first.input_spec),
        ):
            if a != b:
                raise CheckpointError(f"{m.path}: {what} differ from {first.path}'s; they cannot be ensembled")


@torch.no_grad()
def ensemble_probs(members: Sequence[Checkpoint], x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean class probabilities (B, K) of all members on one padded batch."""
    total = None
    for m in members:
        m.model.eval()
        device = next(m.model.parameters()).device
        logits = m.model(x.to(device), lengths.to(device)).float().cpu()  # (B, K)
        probs = torch.sigmoid(logits) if m.multi_label else torch.softmax(logits, dim=-1)
        total = probs if total is None else total + probs
    return total / len(members)


def ensemble_predict(members: Sequence[Checkpoint], batches: Iterable[Batch]) -> tuple[list[str], np.ndarray]:
    """(ids, mean probabilities (N, K)) over batches, in batch order."""
    check_compatible(members)
    ids: list[str] = []
    out: list[np.ndarray] = []
    for batch in batches:
        out.append(ensemble_probs(members, batch.x, batch.lengths).numpy())
        ids += list(batch.ids)
    K = len(members[0].class_names)
    return ids, np.concatenate(out) if out else np.zeros((0, K), np.float32)
