"""A float32 matrix product through oneDNN, with its gradients through oneDNN too.

On a CPU, `F.linear` and `torch.mm` in float32 run MKL's GEMM; on the AMD CPUs measured here MKL
takes its AVX2 kernels, about half the speed of oneDNN's on the same product, while `nn.LSTM` runs
oneDNN's (docs/BENCHMARKS.md, "Issue 19: the QRNN's products through oneDNN"). `linear_rows(x, w)`
computes x @ w.T for x (N, D) and w (G, D) with oneDNN's inner product (`torch.ops.mkldnn.
_linear_pointwise`, the kernel torch's own compiler uses for CPU linear layers), and its backward:

    dx = g @ w              (oneDNN, w read transposed in place)
    dw = sum_chunks g_c.T @ x_c   (oneDNN, the N rows in chunks of ROWS_PER_CHUNK: one product
                                   over all N reduces along a long dimension oneDNN runs slower)

It falls back to `F.linear` (the reference) where oneDNN cannot take the call: not float32, not
on the CPU, under autocast, while a graph is captured for export, or a torch built without oneDNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.pixels import capturing_graph

ROWS_PER_CHUNK = 1024  # rows of x and g per product in the weight gradient


def onednn_linear_available() -> bool:
    """Whether this torch can run float32 products through oneDNN's inner product."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _mm_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias) through oneDNN: a (M, K), b (N, K), either may be a transposed view."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _LinearRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _mm_t(x, weight, bias)  # (N, G)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        dx = _mm_t(grad, weight.t()) if ctx.needs_input_grad[0] else None  # (N, D)
        dw = None
        if ctx.needs_input_grad[1]:
            for i in range(0, len(x), ROWS_PER_CHUNK):
                part = _mm_t(grad[i : i + ROWS_PER_CHUNK].t(), x[i : i + ROWS_PER_CHUNK].t())  # (G, D)
                dw = part if dw is None else dw.add_(part)
        db = grad.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db


def _fast(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return (
        not capturing_graph()  # an exported graph holds F.linear: the exporters know no oneDNN op
        and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and len(x) > 0
        and (bias is None or bias.dtype == torch.float32)
        and not torch.is_autocast_enabled("cpu") and onednn_linear_available()
    )  # fmt: skip


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (N, D) @ weight.T (+ bias) -> (N, G), differentiable in all; oneDNN where it can (module
    docstring), else `F.linear`."""
    if not _fast(x, weight, bias):
        return F.linear(x, weight, bias)
    return _LinearRows.apply(x.contiguous(), weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` whose product runs through `linear_rows`: the same parameters, init and state
    dict, about twice as fast in float32 training on the CPUs measured (docs/BENCHMARKS.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        return linear_rows(rows, self.weight, self.bias).view(*x.shape[:-1], self.out_features)
