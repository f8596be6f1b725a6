"""Quasi-Recurrent Neural Networks (Bradbury, Merity, Xiong & Socher 2016, arXiv:1611.01576).

A QRNN layer computes its gates for all steps at once with a causal convolution of width k over
the input, then runs only an elementwise recurrence ("pooling") over time:

    Z = tanh(conv(X)),  F = sigmoid(conv(X)),  O = sigmoid(conv(X)),  I = sigmoid(conv(X))
    f-pooling:   c_t = f_t * c_{t-1} + (1 - f_t) * z_t,   h_t = c_t
    fo-pooling:  the same c_t,                            h_t = o_t * c_t
    ifo-pooling: c_t = f_t * c_{t-1} + i_t * z_t,         h_t = o_t * c_t

Zoneout on F keeps a unit's previous state: in training 1 - f is dropped (without rescaling) with
probability p, in evaluation 1 - f is scaled by 1 - p (the expectation; pytorch-qrnn does the same).

A layer's gates come from one matrix product over the stacked window (`models.onednn.linear_rows`:
oneDNN on CPU, forward and backward), and everything after it -- activations,
the recurrence c_t = f_t * c_{t-1} + u_t (u = (1 - f) z or i z), the output gate -- runs in
`QRNNPool`, one autograd Function with a hand-written reverse-time backward.
`QRNNLayer.forward_reference` is the same layer in plain autograd ops with `forget_mult_reference`,
the plain loop over time: the reference the tests compare against. `ForgetMult` / `forget_mult` is
the bare recurrence as its own Function (for other cells; the benchmark times it against the loop).
All of it is CPU/GPU agnostic torch code; there is no custom CUDA kernel (a compiled kernel would be
faster on GPU but breaks across torch versions).

`QRNNClassifier` (registry name "qrnn") classifies YouTube-8M features `(B, T, 1152)`: per-frame l2
normalization (like the starter baselines) times sqrt(D) -- unit RMS per component; the bare
unit-norm vector gives gate pre-activations of std ~0.02 under the default init, on which a
video-level QRNN collapses to the label prior -- a stack of QRNN layers, pooling over the true steps
(`pool = "mean"` of the outputs by default: a video's labels describe all of it; or "last", the
output at the last true step, with the backward direction's output at step 0), dropout, classifier.
Padding never leaks: the convolution is causal, the backward direction runs on each sequence
reversed within its own length, and pooling reads only true steps. Video-level input is T = 1,
where the QRNN is a gated MLP: h = o * (1 - f) * z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from models.common import (
    FEATURE_DIM,
    NUM_CLASSES,
    ContextGating,
    OutputGating,
    l2_normalize_frames,
    length_mask,
    make_classifier,
)
from models.onednn import linear_rows
from models.registry import register_model

POOLINGS = ("f", "fo", "ifo")


# ------------------------------------------------------------------------------------------------
# The recurrence c_t = f_t * c_{t-1} + u_t


def _scan(u: torch.Tensor, f: torch.Tensor, c0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Over time-major (T, B, H): out_t = f_t * out_{t-1} + u_t, out_{-1} = c0. One op per step;
    `out` may be `u` itself (in place)."""
    prev = c0
    for t in range(u.shape[0]):
        prev = torch.addcmul(u[t], f[t], prev, out=out[t])
    return out


def _scan_back(g: torch.Tensor, f: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Reverse time: out_t = g_t + f_{t+1} * out_{t+1} (gradients through the recurrence); `out`
    may be `g` itself (in place)."""
    T = g.shape[0]
    if out is not g:
        out[T - 1].copy_(g[T - 1])
    for t in range(T - 2, -1, -1):
        torch.addcmul(g[t], f[t + 1], out[t + 1], out=out[t])
    return out


class ForgetMult(torch.autograd.Function):
    """c_t = f_t * c_{t-1} + u_t over time-major (T, B, H) tensors, with initial state c0 (B, H).

    Backward, with g_t = dL/dc_t from outside: dc_t = g_t + f_{t+1} * dc_{t+1} (one reverse loop),
    then du_t = dc_t, df_t = dc_t * c_{t-1}, dc0 = f_1 * dc_1 (vectorized).
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor, u: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
        f = f.contiguous()
        c = _scan(u, f, c0, out=u.new_empty(u.shape))  # written once: no copy of u first
        ctx.save_for_backward(f, c, c0)
        return c

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        f, c, c0 = ctx.saved_tensors
        dc = _scan_back(grad_c, f, out=grad_c.new_empty(grad_c.shape))
        df = du = dc0 = None
        if ctx.needs_input_grad[0]:
            df = torch.empty_like(dc)
            torch.mul(dc[1:], c[:-1], out=df[1:])
            torch.mul(dc[0], c0, out=df[0])
        if ctx.needs_input_grad[1]:
            du = dc
        if ctx.needs_input_grad[2]:
            dc0 = f[0] * dc[0]
        return df, du, dc0


def forget_mult(f: torch.Tensor, u: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
    """c (T, B, H) with c_t = f_t * c_{t-1} + u_t; f, u (T, B, H), c0 (B, H) or None (zeros)."""
    if c0 is None:
        c0 = u.new_zeros(u.shape[1:])
    return ForgetMult.apply(f, u, c0)


def forget_mult_reference(f: torch.Tensor, u: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
    """The plain loop over `unbind(0)`, differentiated by autograd: the reference implementation."""
    c = u.new_zeros(u.shape[1:]) if c0 is None else c0
    out = []
    for f_t, u_t in zip(f.unbind(0), u.unbind(0)):
        c = f_t * c + u_t
        out.append(c)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------
# Layers


CHUNK_BYTES = 8 << 20  # gates per chunk of steps in QRNNPool: a few MB, so a chunk's work stays in cache


def _chunks(gates: torch.Tensor) -> list[tuple[int, int]]:
    """[t0, t1) spans of steps holding about CHUNK_BYTES of the (T, B, G*H) gates each."""
    T, B, GH = gates.shape
    steps = max(1, CHUNK_BYTES // max(1, B * GH * gates.element_size()))
    return [(t0, min(T, t0 + steps)) for t0 in range(0, T, steps)]


def _one_minus(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.mul(x, -1.0, out=out).add_(1.0)


def _tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place as 2 sigmoid(2x) - 1: the same function (in float32 to within a few 1e-7,
    absolute), several times cheaper than torch.tanh on the CPU (docs/BENCHMARKS.md)."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


class QRNNPool(torch.autograd.Function):
    """The whole elementwise part of a QRNN layer in one autograd node: gate pre-activations
    (T, B, G*H) -> hidden outputs (T, B, H), for f, fo and ifo pooling, with zoneout.

    z = tanh, s = sigmoid of the F block, keep = (1 - s) * m (m: the zoneout mask or scale, else 1),
    f = 1 - keep, u = keep * z (f, fo) or i * z (ifo), c_t = f_t c_{t-1} + u_t, h = c or o * c.
    Written out (forward and backward by hand) because the composed version allocates a fresh
    (T, B, H) tensor per elementwise op and per gradient (78 MB each at T=300, B=64, H=1024), and
    the CPU's time goes to moving them through memory and faulting them in.

    Forward and backward walk through time in chunks of about `CHUNK_BYTES` of gates: every
    elementwise op and the recurrence of a chunk run while it sits in the CPU's cache, so each
    full-size tensor passes through memory once. `bias` (G*H,), when given, is added to the gates
    first (the layer's products come without it). With `overwrite=True` (the layer hands over its
    own fresh gates, which nothing else holds) the activations are written over the gates and the
    gradients over the activations: no (T, B, G*H) tensor is allocated, and a second backward
    through the node is refused (autograd sees the saved activations changed).
    """

    @staticmethod
    def forward(
        ctx, gates: torch.Tensor, c0: torch.Tensor, m: torch.Tensor | None, pooling: str,
        bias: torch.Tensor | None = None, overwrite: bool = False,
    ) -> torch.Tensor:
        T, B, _ = gates.shape
        H = c0.shape[-1]
        act = gates if overwrite else torch.empty_like(gates)  # activations, in the gates' layout
        c, h = gates.new_empty(T, B, H), gates.new_empty(T, B, H)  # time-major: walked step by step
        chunks = _chunks(gates)
        f = gates.new_empty(chunks[0][1], B, H)
        prev = c0
        for t0, t1 in chunks:
            a = act[t0:t1]
            if not overwrite:
                a.copy_(gates[t0:t1])
            if bias is not None:
                a.add_(bias)
            _tanh_(a[..., :H])
            a[..., H:].sigmoid_()
            prev = _pool_chunk(a, None if m is None else m[t0:t1], prev, c[t0:t1], h[t0:t1], f[: t1 - t0], pooling)
        ctx.pooling, ctx.overwrite, ctx.with_bias = pooling, overwrite, bias is not None
        ctx.save_for_backward(act, c, c0, m)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        act, c, c0, m = ctx.saved_tensors
        B, H = c0.shape
        chunks = _chunks(act)
        grad = act if ctx.overwrite else torch.empty_like(act)  # dL/d(pre-activations), the gates' layout
        work = _Work(*(act.new_empty(chunks[0][1], B, H) for _ in _Work._fields))
        carry = None  # (f, dc) of the step after the chunk
        db = act.new_zeros(act.shape[-1]) if ctx.with_bias else None
        for t0, t1 in reversed(chunks):
            g = grad[t0:t1]
            if not ctx.overwrite:
                g.copy_(act[t0:t1])
            prev = c0 if t0 == 0 else c[t0 - 1]
            carry = _unpool_chunk(g, None if m is None else m[t0:t1], prev, c[t0:t1], grad_h[t0:t1], carry,
                                  work.head(t1 - t0), ctx.pooling)  # fmt: skip
            if db is not None:
                db += g.sum((0, 1))
        f0, dc_0 = carry
        dc0 = f0 * dc_0 if ctx.needs_input_grad[1] else None
        return grad, dc0, None, None, db, None


def _pool_chunk(
    a: torch.Tensor, m: torch.Tensor | None, prev: torch.Tensor, c: torch.Tensor, h: torch.Tensor,
    f: torch.Tensor, pooling: str,
) -> torch.Tensor:
    """One chunk of QRNNPool's forward from its activations `a`: fills c and h, returns the last c."""
    H = c.shape[-1]
    z, s = a[..., :H], a[..., H : 2 * H]
    _one_minus(s, f)  # keep = 1 - s
    if m is not None:
        f.mul_(m)
    torch.mul(f if pooling != "ifo" else a[..., 3 * H :], z, out=c)  # u = keep z (or i z)
    _one_minus(f, f)  # f = 1 - keep
    _scan(c, f, prev, out=c)  # the recurrence, in place over u
    if pooling == "f":
        h.copy_(c)
    else:
        torch.mul(a[..., 2 * H : 3 * H], c, out=h)
    return c[-1]


class _Work(NamedTuple):
    """QRNNPool's backward buffers, (steps, B, H) each: keep, f, dL/dc, a copy of s, a spare."""

    keep: torch.Tensor
    f: torch.Tensor
    dc: torch.Tensor
    s: torch.Tensor
    spare: torch.Tensor

    def head(self, n: int) -> _Work:
        return _Work(*(b[:n] for b in self))


def _unpool_chunk(
    a: torch.Tensor, m: torch.Tensor | None, prev: torch.Tensor, c: torch.Tensor, grad_h: torch.Tensor,
    carry: tuple[torch.Tensor, torch.Tensor] | None, w: _Work, pooling: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of QRNNPool's backward, last chunk first: turns the activations `a` into their
    gradient in place (each block is read for the last time before it is written); returns (f, dL/dc)
    of the chunk's first step, which the chunk before it needs."""
    H = c.shape[-1]
    z, s = a[..., :H], a[..., H : 2 * H]
    keep, f, dc = w.keep, w.f, w.dc
    _one_minus(s, keep)
    if m is not None:
        keep.mul_(m)
    _one_minus(keep, f)
    w.s.copy_(s)  # the F block's gradient goes over s; the sigmoid's derivative needs it last
    if pooling == "f":
        dc.copy_(grad_h)
    else:
        o = a[..., 2 * H : 3 * H]
        torch.mul(grad_h, o, out=dc)  # dL/dc from the output
        o.addcmul_(o, o, value=-1.0).mul_(grad_h).mul_(c)  # dL/do through the sigmoid, o (1 - o), over o
    if carry is not None:
        dc[-1].addcmul_(*carry)  # dc_t += f_{t+1} dc_{t+1} across the chunk boundary
    _scan_back(dc, f, out=dc)
    df = s  # dc_t c_{t-1}, then turned into the F block's gradient
    torch.mul(dc[1:], c[:-1], out=df[1:])
    torch.mul(dc[0], prev, out=df[0])
    if pooling == "ifo":
        i = a[..., 3 * H :]
        torch.mul(dc, z, out=w.spare)  # dL/di before the sigmoid, while z is still there
        df.neg_()  # d keep = -df (u = i z does not depend on keep)
        z.mul_(z).neg_().add_(1.0).mul_(dc).mul_(i)  # dL/dz = dc i (1 - z^2), over z
        i.addcmul_(i, i, value=-1.0).mul_(w.spare)  # dL/di through the sigmoid, i (1 - i), over i
    else:
        df.neg_().addcmul_(dc, z)  # d keep = du z - df  (u = keep z)
        z.mul_(z).neg_().add_(1.0).mul_(dc).mul_(keep)  # dL/dz = dc keep (1 - z^2), over z
    if m is not None:
        df.mul_(m)  # keep = (1 - s) m
    df.neg_().mul_(w.s.addcmul_(w.s, w.s, value=-1.0))  # ds = -d keep m, through the sigmoid: s (1 - s)
    return f[0].clone(), dc[0].clone()


def _stack_taps(x: torch.Tensor, k: int) -> torch.Tensor:
    """[x_{t-k+1}, ..., x_t] along features for every step of time-major x (T, B, D) -> (T, B, k*D),
    zeros before the start."""
    T = x.shape[0]
    padded = F.pad(x, (0, 0, 0, 0, k - 1, 0))  # (T+k-1, B, D)
    return torch.cat([padded[j : j + T] for j in range(k)], dim=-1)


class QRNNLayer(nn.Module):
    """One QRNN layer over time-major input: (T, B, D) -> hidden outputs h (T, B, H).

    All gates come from a width-k causal convolution over time, [x_{t-k+1}, ..., x_t] (zeros before
    the start). The weights live in `conv`, a Linear over the stacked window (G*H, k*D), oldest step
    first; forward runs them as one product over all T*B rows through `linear_rows` (oneDNN's, about
    twice MKL's F.linear on the CPUs measured: docs/BENCHMARKS.md). The elementwise part runs in
    `QRNNPool`.
    """

    def __init__(self, input_size: int, hidden_size: int, *, window: int = 1, pooling: str = "fo", zoneout: float = 0.0) -> None:
        super().__init__()
        assert pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {pooling!r}"
        assert window >= 1, "window must be >= 1"
        assert 0.0 <= zoneout < 1.0, "zoneout must be in [0, 1)"
        self.input_size, self.hidden_size = input_size, hidden_size
        self.window, self.pooling, self.zoneout = window, pooling, zoneout
        self.num_gates = len(pooling) + 1  # Z plus one per letter: F, O, I
        self.conv = nn.Linear(window * input_size, self.num_gates * hidden_size)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate pre-activations (T, B, G*H) of time-major x (T, B, D) without the bias (QRNNPool adds it)."""
        T, B, D = x.shape
        k = self.window
        weight = self.conv.weight  # (G*H, k*D), taps oldest first
        if T == 1:  # only the newest tap sees data (the older ones see the zeros before the start)
            weight = weight[:, (k - 1) * D :].contiguous()
        elif k > 1:  # the window stacked along features, as the Linear reads it: (T, B, k*D)
            x = _stack_taps(x, k)
        return linear_rows(x.reshape(T * B, -1), weight).view(T, B, -1)  # one product over the T*B rows

    def forward(self, x: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
        T, B, _ = x.shape
        H = self.hidden_size
        gates = self.gates(x)  # fresh, held by nothing else: QRNNPool may overwrite it
        if c0 is None:
            c0 = gates.new_zeros(B, H)
        m = None  # zoneout: drop 1 - f with probability p in training, scale it by 1 - p in evaluation
        if self.zoneout > 0:
            m = (
                torch.empty(T, B, H, dtype=gates.dtype, device=gates.device).bernoulli_(1.0 - self.zoneout)
                if self.training
                else gates.new_full((1, 1, 1), 1.0 - self.zoneout).expand(T, B, H)
            )
        return QRNNPool.apply(gates, c0, m, self.pooling, self.conv.bias, True)

    def forward_reference(self, x: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
        """The same layer composed of plain torch ops (autograd differentiates it): the reference."""
        T, B, D = x.shape
        H, k = self.hidden_size, self.window
        if k > 1:
            padded = F.pad(x, (0, 0, 0, 0, k - 1, 0))  # (T+k-1, B, D), zeros before the start
            x = torch.cat([padded[j : j + T] for j in range(k)], dim=-1)  # (T, B, k*D), oldest first
        gates = self.conv(x)  # (T, B, G*H)
        z = torch.tanh(gates[..., :H])
        f = torch.sigmoid(gates[..., H : 2 * H])
        keep = 1.0 - f  # the share of the new candidate (f-pooling); zoneout drops it
        if self.zoneout > 0:
            if self.training:
                keep = keep * torch.empty_like(keep).bernoulli_(1.0 - self.zoneout)
            else:
                keep = keep * (1.0 - self.zoneout)
        f = 1.0 - keep
        u = torch.sigmoid(gates[..., 3 * H : 4 * H]) * z if self.pooling == "ifo" else keep * z
        c = forget_mult_reference(f, u, c0)  # (T, B, H)
        if self.pooling == "f":
            return c
        return torch.sigmoid(gates[..., 2 * H : 3 * H]) * c  # (T, B, H)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of time-major (T, B, ...) within its own length; padding stays put."""
    T, B = x.shape[:2]
    t = torch.arange(T, device=x.device)[:, None]  # (T, 1)
    L = lengths.to(x.device)[None, :]  # (1, B)
    idx = torch.where(t < L, L - 1 - t, t)  # (T, B); an involution
    return x.gather(0, idx.view(T, B, *([1] * (x.dim() - 2))).expand_as(x))


class QRNN(nn.Module):
    """Stacked, optionally bidirectional QRNN: batch-first (B, T, D) + lengths -> (B, T, out_size).

    With `dense=True` (the paper's "densely connected" QRNN, its sentiment model), every layer reads
    the concatenation of the input and all earlier layers' outputs, and the stack returns the
    concatenation of the input and every layer's output: out_size = D + L * H * dirs (else H * dirs).
    Outputs beyond each length are zero.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        window: int = 1,
        pooling: str = "fo",
        zoneout: float = 0.0,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dense: bool = False,
    ) -> None:
        super().__init__()
        self.num_directions = 2 if bidirectional else 1
        self.dense = dense
        width = hidden_size * self.num_directions
        self.out_size = input_size + num_layers * width if dense else width
        # Which output channels come from a backward-in-time direction (their "last" step is step 0).
        one_layer = torch.zeros(width, dtype=torch.bool)
        one_layer[hidden_size:] = True
        parts = [torch.zeros(input_size, dtype=torch.bool)] + [one_layer] * num_layers if dense else [one_layer]
        self.register_buffer("backward_channels", torch.cat(parts), persistent=False)
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            d_in = input_size + i * width if dense else (input_size if i == 0 else width)
            self.layers.append(
                nn.ModuleList(
                    QRNNLayer(d_in, hidden_size, window=window, pooling=pooling, zoneout=zoneout)
                    for _ in range(self.num_directions)
                )
            )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        lengths = torch.full((B,), T, dtype=torch.long, device=x.device) if lengths is None else lengths.to(x.device)
        mask = length_mask(lengths, T).t()[..., None].to(x.dtype)  # (T, B, 1)
        h = x.transpose(0, 1) * mask  # (T, B, D) time-major for the recurrence
        features = [h]  # dense: the input and every layer's output
        for i, directions in enumerate(self.layers):
            if i > 0:
                h = self.dropout(torch.cat(features, dim=-1) if self.dense else h)
            outs = [directions[0](h)]
            if self.num_directions == 2:
                outs.append(reverse_padded(directions[1](reverse_padded(h, lengths)), lengths))
            h = torch.cat(outs, dim=-1) * mask  # (T, B, H*dirs), zero beyond each length
            features.append(h)
        out = torch.cat(features, dim=-1) if self.dense else h  # (T, B, out_size)
        return out.transpose(0, 1)  # (B, T, out_size)


# ------------------------------------------------------------------------------------------------
# Classifier


@dataclass(frozen=True)
class QRNNConfig:
    num_classes: int = NUM_CLASSES  # K, the vocabulary size (YouTube-8M: 3862)
    input_size: int = FEATURE_DIM  # D, 1024 rgb + 128 audio
    hidden_size: int = 1024  # H per direction
    num_layers: int = 2  # stacked QRNN layers
    window: int = 2  # causal convolution width k (the paper uses 2 on its first layers)
    pooling: str = "fo"  # "f", "fo" or "ifo"
    zoneout: float = 0.0  # probability of keeping a unit's previous state (training)
    dropout: float = 0.0  # dropout between layers and before the classifier
    input_dropout: float = 0.0  # dropout on the input features (training only)
    bidirectional: bool = False  # add a backward-in-time QRNN per layer (outputs concatenated)
    dense: bool = False  # densely connected layers; the classifier also sees the input (see QRNN)
    pool: str = "mean"  # over time: "mean" of the true steps' outputs, or "last" true step
    classifier: str = "logistic"  # head on the pooled vector: "logistic" (linear) or "moe"
    num_mixtures: int = 2  # MoE experts when classifier = "moe"
    init_prior: float = 0.0  # if > 0: start every class at this probability (bias = logit(prior)), e.g. 1e-3
    l2_normalize: bool = True  # per-frame l2 normalization of the input (then scaled by sqrt(D), see below)
    batch_norm: bool = False  # batch norm on the pooled vector, before dropout and the classifier
    context_gating: bool = False  # context gating (Miech et al. 2017) on the pooled vector: h * sigmoid(W h + b)
    output_gating: bool = False  # context gating on the predicted probabilities (models.common.OutputGating)


@register_model("qrnn", QRNNConfig)
class QRNNClassifier(nn.Module):
    """QRNN over YouTube-8M features (B, T, 1152) + lengths -> logits (B, K)."""

    def __init__(self, config: QRNNConfig) -> None:
        super().__init__()
        assert config.pool in ("mean", "last"), f"pool must be 'mean' or 'last', got {config.pool!r}"
        self.config = config
        self.qrnn = QRNN(
            config.input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            window=config.window,
            pooling=config.pooling,
            zoneout=config.zoneout,
            dropout=config.dropout,
            bidirectional=config.bidirectional,
            dense=config.dense,
        )
        self.norm = nn.BatchNorm1d(self.qrnn.out_size) if config.batch_norm else nn.Identity()
        self.gating = ContextGating(self.qrnn.out_size) if config.context_gating else nn.Identity()
        self.dropout = nn.Dropout(config.dropout)
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.classifier = make_classifier(
            config.classifier, self.qrnn.out_size, config.num_classes, config.num_mixtures, config.init_prior
        )
        self.output_gating = OutputGating(config.num_classes) if config.output_gating else nn.Identity()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        lengths = lengths.to(x.device).clamp(1, T)
        if self.config.l2_normalize:
            x = l2_normalize_frames(x) * D**0.5  # unit RMS per component: gates start in their working range
        h = self.qrnn(self.input_dropout(x), lengths)  # (B, T, out_size), zero beyond each length
        if self.config.pool == "mean":
            pooled = h.sum(dim=1) / lengths.to(h.dtype)[:, None]  # (B, out_size)
        else:  # the last true step; for backward-direction channels that is step 0
            last = h[torch.arange(B, device=h.device), lengths - 1]  # (B, out_size)
            pooled = torch.where(self.qrnn.backward_channels, h[:, 0], last)
        return self.output_gating(self.classifier(self.dropout(self.gating(self.norm(pooled)))))  # (B, K)
