"""The one batch type every data path produces, and padding collation for variable lengths."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import get_worker_info


class Batch(NamedTuple):
    x: torch.Tensor  # (B, T, ...) padded with zeros beyond each length; uint8 pixels or float features
    lengths: torch.Tensor  # (B,) int64, true number of steps of each item
    y: torch.Tensor  # (B,) int64 class index, or (B, K) float multi-hot for multi-label data
    ids: list[str]  # clip / video ids, in batch order


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized tensor for a batch: in shared memory inside a DataLoader worker, so that it
    reaches the training process without the copy torch would otherwise make to send it (as torch's
    default_collate does)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def pad_collate(items: list[tuple[np.ndarray | torch.Tensor, object, str]] | Batch) -> Batch:
    """Collate `(x (T, ...), y, id)` items into a `Batch`, zero-padding x along time. A `Batch`
    passes through: a dataset's `__getitems__` (`data.datasets.CachedClips`) built it already."""
    if isinstance(items, Batch):
        return items
    out, lengths = pad_steps([x for x, _, _ in items])
    ys = [y for _, y, _ in items]
    y = torch.stack([torch.as_tensor(v) for v in ys]) if ys else torch.empty(0)
    return Batch(out, lengths, y, [i for _, _, i in items])


def pad_steps(xs: list[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences (T_i, ...) stacked into one `batch_tensor` (B, max T_i, ...), zero beyond each
    length, and their lengths (B,) int64. Rows are written through a numpy view of the batch (a
    slice assignment there costs a third of torch's, per item)."""
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    T = int(lengths.max()) if len(xs) else 0
    out = batch_tensor((len(xs), T, *xs[0].shape[1:]), torch.as_tensor(xs[0]).dtype)  # (B, T, ...)
    rows = out.numpy()
    for i, x in enumerate(xs):
        rows[i, : x.shape[0]] = x
        rows[i, x.shape[0] :] = 0
    return out, lengths
