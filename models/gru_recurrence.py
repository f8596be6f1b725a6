"""The Keras GRU recurrence (reset gate before the recurrent matmul) over a packed, shrinking batch,
as one autograd Function with a hand-written reverse-time backward.

Per step t, on the n_t clips still running (rows 0..n_t-1, clips sorted longest first; the row
counts never grow), with the carried state h (n_t, H) and the recurrent dropout mask m (B, H):

    hd = h * m[:n_t]                               (hd = h without a mask)
    z, r = sigmoid(gx_t[:, :2H] + hd @ U_zr)
    c = tanh(gx_t[:, 2H:] + (r * hd) @ U_h)
    h' = z * h + (1 - z) * c                       (the carried h, unmasked)

which is `models.tt_rnn.TTGRU._cell` (cell "keras") step for step. The per-step autograd version
costs a dozen small nodes per step forward and backward (milliseconds per step at batch 16); here a
step is 7 ops forward and 7 backward, and the weight gradients are two GEMMs over all steps at once.

Saved for backward: the activations z, r (N, 2H) and c (N, H) and each step's new state (N, H),
all packed like the gate inputs (4H floats per row, N = total rows). The previous states, hd, r * hd
and the gate derivatives are recomputed in backward, vectorized over all rows before the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable


def _layout(sizes: Sequence[int], device: torch.device) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row offsets of the steps; for every packed row its position in its step (= its clip, sorted),
    the row of its previous state in the packed new-state tensor (-1: the zero initial state), and
    each clip's row at its last step."""
    offsets, prev, pos, last = [0], [], [], [0] * sizes[0]
    for t, n in enumerate(sizes):
        assert n > 0 and (t == 0 or n <= sizes[t - 1]), f"step sizes must be positive, non-increasing: {list(sizes)}"
        pos.extend(range(n))
        prev.extend(range(offsets[t - 1], offsets[t - 1] + n) if t else [-1] * n)
        ended = sizes[t + 1] if t + 1 < len(sizes) else 0  # clips ended..n-1 end at this step
        last[ended:n] = range(offsets[t] + ended, offsets[t] + n)
        offsets.append(offsets[t] + n)
    as_long = dict(dtype=torch.long, device=device)
    return offsets, torch.tensor(pos, **as_long), torch.tensor(prev, **as_long), torch.tensor(last, **as_long)


class GRURecurrence(torch.autograd.Function):
    """Packed gate inputs gx (N, 3H), step sizes (non-increasing, sum N), U_zr (H, 2H), U_h (H, H),
    mask (B, H) or None -> each clip's state after its last step (B, H), in the packed (sorted)
    order. No gradient for the mask or the sizes."""

    @staticmethod
    def forward(ctx, gx: torch.Tensor, sizes: tuple[int, ...], U_zr: torch.Tensor, U_h: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        N, H = gx.shape[0], U_h.shape[0]
        assert gx.shape == (N, 3 * H) and sum(sizes) == N, "gx must be (sum(sizes), 3H)"
        offsets, pos, prev, last = _layout(sizes, gx.device)
        zr, c, hn = gx.new_empty(N, 2 * H), gx.new_empty(N, H), gx.new_empty(N, H)
        h = gx.new_zeros(sizes[0], H)
        for t, n in enumerate(sizes):
            a, b = offsets[t], offsets[t + 1]
            h = h[:n]  # the clips that ended keep their last state in hn
            hd = h if mask is None else h * mask[:n]
            torch.addmm(gx[a:b, : 2 * H], hd, U_zr, out=zr[a:b]).sigmoid_()
            rh = zr[a:b, H:] * hd
            torch.addmm(gx[a:b, 2 * H :], rh, U_h, out=c[a:b]).tanh_()
            h = torch.lerp(c[a:b], h, zr[a:b, :H], out=hn[a:b])
        ctx.sizes, ctx.offsets = sizes, offsets
        ctx.save_for_backward(U_zr, U_h, mask, zr, c, hn, pos, prev)
        return hn.index_select(0, last)  # (B, H)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        U_zr, U_h, mask, zr, c, hn, pos, prev = ctx.saved_tensors
        H = U_h.shape[0]
        z, r = zr[:, :H], zr[:, H:]
        # previous states, packed like the rows (zeros before the first step), and hd = h * m
        h = torch.cat([hn.new_zeros(1, H), hn]).index_select(0, prev + 1)  # (N, H)
        hd = h if mask is None else h * mask.index_select(0, pos)
        # d h'/d(pre-activations), per unit of dh', vectorized over all rows
        dz_pre = (h - c).mul_(z).mul_(1 - z)  # dh' (h - c) z (1 - z)
        dc_pre = (1 - z).mul_(1 - c * c)  # dh' (1 - z) (1 - c^2)
        dr_pre = hd * r * (1 - r)  # d(r hd) hd r (1 - r) -> times d(r hd)
        dgx = zr.new_empty(zr.shape[0], 3 * H)
        # rows n_t.. of dh hold, untouched until their step is undone, the gradient of the clips
        # whose last step is t
        dh = grad.clone(memory_format=torch.contiguous_format)
        _backward_loop(ctx.sizes, ctx.offsets, dh, dgx, z, r, dz_pre, dc_pre, dr_pre, mask, U_zr, U_h)
        dU_zr = dU_h = None
        if ctx.needs_input_grad[2]:
            dU_zr = hd.T @ dgx[:, : 2 * H]  # one GEMM over all steps
        if ctx.needs_input_grad[3]:
            dU_h = (r * hd).T @ dgx[:, 2 * H :]
        return dgx if ctx.needs_input_grad[0] else None, None, dU_zr, dU_h, None


def _backward_loop(sizes, offsets, dh, dgx, z, r, dz_pre, dc_pre, dr_pre, mask, U_zr, U_h) -> None:
    """Reverse time. dh (B, H) holds dL/dh' of the step being undone in its first n_t rows and is
    overwritten with dL/dh of the previous state; dgx (N, 3H) receives the pre-activation grads."""
    H = U_h.shape[0]
    for t in range(len(sizes) - 1, -1, -1):
        n, a, b = sizes[t], offsets[t], offsets[t + 1]
        g = dh[:n]
        torch.mul(g, dz_pre[a:b], out=dgx[a:b, :H])
        dc = torch.mul(g, dc_pre[a:b], out=dgx[a:b, 2 * H :])
        drh = dc @ U_h.T  # dL/d(r hd)
        torch.mul(drh, dr_pre[a:b], out=dgx[a:b, H : 2 * H])
        dhd = drh.mul_(r[a:b]).addmm_(dgx[a:b, : 2 * H], U_zr.T)  # dL/dhd
        if mask is not None:
            dhd.mul_(mask[:n])
        torch.addcmul(dhd, g, z[a:b], out=g)  # through hd and through z * h


def gru_recurrence(gx: torch.Tensor, sizes: Sequence[int], U_zr: torch.Tensor, U_h: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Keras GRU over packed gate inputs gx (N, 3H) in steps of `sizes` rows (non-increasing)
    from a zero state -> (B, H), each clip's last state, B = sizes[0]."""
    return GRURecurrence.apply(gx, tuple(int(n) for n in sizes), U_zr, U_h, mask)


def gru_recurrence_reference(gx: torch.Tensor, sizes: Sequence[int], U_zr: torch.Tensor, U_h: torch.Tensor,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same in plain autograd ops, step by step (the `finished` + reversed cat of
    `models.tt_rnn._TTRNNBase._run_steps`): the reference the tests compare against."""
    H = U_h.shape[0]
    h, finished = gx.new_zeros(sizes[0], H), []
    for gx_t in gx.split(list(sizes)):
        n = gx_t.shape[0]
        if n < h.shape[0]:
            finished.append(h[n:])
            h = h[:n]
        hd = h if mask is None else h * mask[:n]
        z, r = torch.sigmoid(gx_t[:, : 2 * H] + hd @ U_zr).chunk(2, dim=1)
        c = torch.tanh(gx_t[:, 2 * H :] + (r * hd) @ U_h)
        h = z * h + (1 - z) * c
    finished.append(h)
    return torch.cat(finished[::-1])
