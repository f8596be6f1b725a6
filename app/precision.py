"""`precision`: "fp32", or "bf16" (the model's forward under torch.autocast to bfloat16; weights,
gradients and the recurrent state stay float32). One home for the choice and its context, used by
training, classify and their command lines. No torch at import: the CLI reads this before torch."""

from __future__ import annotations

from typing import Any

PRECISIONS = ("fp32", "bf16")


def autocast(device: Any, precision: str) -> Any:
    """The forward's numeric context on `device` (a torch.device): autocast for "bf16", off for "fp32"."""
    import torch

    assert precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {precision!r}"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
