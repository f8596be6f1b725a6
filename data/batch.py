"""The one batch type every data path produces, and padding collation for variable lengths."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    x: torch.Tensor  # (B, T, ...) padded with zeros beyond each length; uint8 pixels or float features
    lengths: torch.Tensor  # (B,) int64, true number of steps of each item
    y: torch.Tensor  # (B,) int64 class index, or (B, K) float multi-hot for multi-label data
    ids: list[str]  # clip / video ids, in batch order


def pad_collate(items: list[tuple[np.ndarray | torch.Tensor, object, str]]) -> Batch:
    """Collate `(x (T, ...), y, id)` items into a `Batch`, zero-padding x along time."""
    xs = [torch.as_tensor(x) for x, _, _ in items]
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    T = int(lengths.max()) if len(xs) else 0
    out = xs[0].new_zeros((len(xs), T, *xs[0].shape[1:]))  # (B, T, ...)
    for i, x in enumerate(xs):
        out[i, : x.shape[0]] = x
    ys = [y for _, y, _ in items]
    y = torch.stack([torch.as_tensor(v) for v in ys]) if ys else torch.empty(0)
    return Batch(out, lengths, y, [i for _, _, i in items])
