"""Pixel input helpers shared by the raw-pixel models (TT-RNNs, TT-MLP, plain RNN baselines):
shape checks, the normalization constants, per-clip (Gal-style) dropout masks, and
`capturing_graph()`, which tells the models to take their static-shape export path."""

from __future__ import annotations

import math

import torch

# uint8 pixels stay uint8 until inside the model, which maps them to x * PIXEL_SCALE + PIXEL_SHIFT,
# i.e. [0, 255] -> [-0.5, 0.5].
PIXEL_SCALE = 1.0 / 255.0
PIXEL_SHIFT = -0.5


def flatten_pixels(x: torch.Tensor, in_features: int) -> torch.Tensor:
    """(B, T, H, W, 3) or (B, T, D) -> (B, T, D), checking D against the model's input size."""
    assert x.dim() >= 3, f"expected pixels (B, T, H, W, 3) or (B, T, D), got shape {tuple(x.shape)}"
    B, T = x.shape[:2]
    D = math.prod(x.shape[2:])
    assert D == in_features, (
        f"frames of shape {tuple(x.shape[2:])} have {D} values; the model expects {in_features}"
    )
    return x.reshape(B, T, D)  # (B, T, D)


def capturing_graph() -> bool:
    """True while torch.jit.trace, torch.export / torch.compile or an ONNX exporter records the model.

    The graph is then replayed on OTHER inputs, so the models must not branch on tensor values
    (`int(lengths.max())`, `bool(valid.all())`, `nonzero()`): they take a path whose ops depend only
    on shapes, with the same logits, and skip value checks that would be frozen into the graph.
    """
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def check_lengths(lengths: torch.Tensor, B: int, T: int, device: torch.device) -> torch.Tensor:
    """lengths as int64 on `device`, asserted to be (B,) with values in [1, T] (the value check is
    skipped while a graph is captured, see `capturing_graph`)."""
    lengths = lengths.to(device=device, dtype=torch.long)
    assert lengths.shape == (B,), f"lengths must have shape ({B},), got {tuple(lengths.shape)}"
    if capturing_graph():
        return lengths
    assert int(lengths.min()) >= 1 and int(lengths.max()) <= T, (
        f"lengths must be in [1, T={T}], got {lengths.tolist()}"
    )
    return lengths


def gal_mask(shape: tuple[int, ...], p: float, like: torch.Tensor) -> torch.Tensor:
    """Inverted-dropout mask of `shape`: 0 with probability p, else 1 / (1 - p) (Gal & Ghahramani
    2016: the same mask is reused at every time step of a clip)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p).div_(1.0 - p)


def state_dtype(gx: torch.Tensor) -> torch.dtype:
    """The recurrent state's dtype: the gates' own; float32 under autocast, so that the rounding of
    bfloat16 / float16 gates does not build up over the steps (a model cast to bfloat16 keeps it)."""
    low = gx.dtype in (torch.bfloat16, torch.float16)
    return torch.float32 if low and torch.is_autocast_enabled(gx.device.type) else gx.dtype
