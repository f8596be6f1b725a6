"""Tensor-Train linear layer (TTL): Novikov et al. 2015, "Tensorizing Neural Networks", as used for
the input-to-hidden map of TT-RNNs (Yang, Krompass, Tresp 2017).

A weight matrix W of shape (prod(out_modes), prod(in_modes)) is stored as d cores
G_k of shape (r_{k-1}, m_k, n_k, r_k) with r_0 = r_d = 1:

    W[(j_1..j_d), (i_1..i_d)] = G_1[:, i_1, j_1, :] @ G_2[:, i_2, j_2, :] @ ... @ G_d[:, i_d, j_d, :]

Flat indices are row-major: input i = (i_1, ..., i_d) with i_1 most significant, so a frame
(H, W, 3) flattened in C order matches in_modes such as 8x20x20x18 for 120x160x3; the same holds for
the output index, so the fused-gate trick (out_modes[0] * 3) puts the gates in contiguous blocks.

Speed (see `_FirstStage` and `tt_linear`): the layer is applied to all B*T frames of a batch
at once. Cost is dominated by the first contraction, which reads every input element; the remaining
contractions touch only small intermediates. We therefore
1. contract the LAST `merge` in-modes first, with the last `merge` cores pre-multiplied into one
   small matrix A (K = m_{p+1}..m_d rows, r_p * n_{p+1}..n_d columns): one well-shaped GEMM
   whose output is K / (r_p n_{p+1}..n_d) times smaller than the input (5.6x for UCF11: K=360 -> 64);
2. run that GEMM over chunks of rows small enough to stay in cache, converting uint8 pixels to
   float inside the chunk, so no float copy of the whole input (184 MB for 800 UCF11 frames) is
   ever written; normalization x * a + b is folded into the GEMM's output
   (a * (x @ A) + b * colsum(A)), an input-dropout mask is applied inside the chunk;
3. use a custom autograd Function that saves only the (uint8) input and re-converts each chunk in
   backward, where it needs only dA = x^T @ grad (pixels need no gradient);
4. contract the remaining leading modes in one einsum with their cores merged into B (small).
The alternatives lose: one mode first (K=18 -> 16 columns) is a skinny GEMM with an intermediate
nearly as large as the input (164 MB for 800 UCF11 frames) and a much larger second stage; three
modes first (K=7200 -> 256) multiply the FLOPs; the K=360 GEMM without chunks leaves the cache. This
layer also beats a plain einsum chain over the whole batch and dense nn.Linear; `scripts/bench_tt.py`
measures all of them (docs/BENCHMARKS.md, "TT layer and TT-RNN" and "Figures formerly quoted in the
code").
Export: while torch.jit.trace / torch.export / ONNX record the layer, steps 2-3 are replaced by
`_first_stage_plain` (the same folded GEMM on the whole float input, no Python loop or Function).
`tt_linear_reference` is the plain formula (an einsum chain, slow) that the tests hold all of this to.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence

import torch
from torch import nn

from models.pixels import capturing_graph

log = logging.getLogger(__name__)

# Rows of the input processed together in the first contraction: chunks of about this many input
# elements (8 MB as float32) stay in L3 cache between the uint8->float conversion and the GEMM.
# Smaller chunks are a little faster on an idle machine, but every chunk costs a few OpenMP barriers,
# which are expensive when other processes compete for the cores; 8 MB is the compromise between the
# two (chunk sizes compared in docs/BENCHMARKS.md, "TT layer and TT-RNN" and "Figures formerly quoted
# in the code").
_CHUNK_ELEMENTS = 1 << 21
# ... and in `_tt_linear_two_steps`, rows whose intermediate Y holds about this many floats (1 MB).
_STEP_ELEMENTS = 1 << 18
# ... and its batched matmuls (one per m1 * m2 inputs) need at least this many multiply-adds each:
# with UCF11's 18 x 20 -> 16 (5,760) the TT map takes 5/6 of the merged GEMM's time, with the 32x24
# demo model's 12 x 8 -> 8 (768) twice its time.
_MIN_STEP_MACS = 2048
# Smallest inner dimension K for which the first GEMM is efficient; see `_default_merge`.
_MIN_FIRST_K = 64


def _prod(xs: Sequence[int]) -> int:
    return math.prod(int(x) for x in xs)


def _default_merge(in_modes: Sequence[int]) -> int:
    """How many trailing in-modes the first GEMM contracts: the fewest with K >= 64 (all if none).

    One mode (K = 18 for UCF11) gives a skinny GEMM and an intermediate nearly as large as the
    input; two (K = 360) give a GEMM near peak speed and a 5.6x smaller intermediate; more modes
    multiply the FLOPs (r_p n_{p+1}..n_d output columns grow by n_k r_{k-1} / r_k per extra mode).
    """
    k = 1
    for s in range(1, len(in_modes) + 1):
        k *= int(in_modes[-s])
        if k >= _MIN_FIRST_K:
            return s
    return len(in_modes)


class _FirstStage(torch.autograd.Function):
    """out = prep(x).view(-1, K) @ A over row chunks, prep(x) = (x * scale + shift) * mask[mask_index].

    x: (rows, D) of any dtype (uint8 pixels stay uint8 in memory); A: (K, J) with D % K == 0;
    in_mask: (G, D) or None, mask_index: (rows,) int64 row -> mask row. Returns (rows * D // K, J).
    Only x (as given) is saved; backward re-converts each chunk. Without a mask the affine part is
    folded into the small output instead of the big input:
    (x * a + b) @ A = a * (x @ A) + b * colsum(A), and d/dA = a * x^T g + b * (1^T g).
    """

    @staticmethod
    def forward(ctx, x, A, scale, shift, in_mask, mask_index, chunk_rows):  # noqa: N803 (A is a matrix)
        rows, D = x.shape
        K, J = A.shape
        per_row = D // K
        out = A.new_empty((rows * per_row, J))  # (rows * D/K, J)
        buf = A.new_empty((min(rows, chunk_rows), D))  # one float chunk, reused (stays in cache)
        fold = in_mask is None
        offset = (shift * A.sum(0, keepdim=True)) if fold else A.new_zeros((1, J))  # (1, J)
        alpha = scale if fold else 1.0
        prep = _ChunkPrep(x, scale, shift, in_mask, mask_index)
        for c0 in range(0, rows, chunk_rows):
            c1 = min(rows, c0 + chunk_rows)
            xc = prep(buf, c0, c1)  # (c, D)
            torch.addmm(offset, xc.view(-1, K), A, alpha=alpha, out=out[c0 * per_row : c1 * per_row])
        ctx.save_for_backward(x, A, in_mask, mask_index)
        ctx.scale, ctx.shift, ctx.chunk_rows = scale, shift, chunk_rows
        return out

    @staticmethod
    def backward(ctx, grad):  # grad: (rows * D/K, J)
        x, A, in_mask, mask_index = ctx.saved_tensors
        rows, D = x.shape
        K, J = A.shape
        per_row = D // K
        scale, shift, chunk_rows = ctx.scale, ctx.shift, ctx.chunk_rows
        need_x, need_A = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        fold = in_mask is None
        grad_A = grad_x = None
        if need_A:
            grad_A = torch.zeros_like(A)
            buf = A.new_empty((min(rows, chunk_rows), D))
            prep = _ChunkPrep(x, scale, shift, in_mask, mask_index)
            for c0 in range(0, rows, chunk_rows):
                c1 = min(rows, c0 + chunk_rows)
                xc = prep(buf, c0, c1)  # (c, D)
                g = grad[c0 * per_row : c1 * per_row]  # (c * D/K, J)
                grad_A.addmm_(xc.view(-1, K).t(), g, alpha=scale if fold else 1.0)  # (K, J)
            if fold and shift != 0.0:
                grad_A.add_(grad.sum(0, keepdim=True), alpha=shift)
        if need_x:
            grad_x = torch.mm(grad.view(-1, J), A.t()).view(rows, D)  # (rows, D)
            if in_mask is not None:
                grad_x.mul_(in_mask.index_select(0, mask_index))
            grad_x.mul_(scale)
        return grad_x, grad_A, None, None, None, None, None


def _two_steps_pay(x: torch.Tensor, cores: Sequence[torch.Tensor], p: int, in_mask) -> bool:
    """Whether `_tt_linear_two_steps` replaces the merged first stage: inference on CPU (no autograd,
    no input dropout, no autocast: bfloat16 runs the merged GEMM faster), a first stage of the last
    two modes, at most 3/4 of its multiply-adds, and batched matmuls of at least `_MIN_STEP_MACS`
    multiply-adds each (smaller ones cost more in per-matrix overhead than they save)."""
    if torch.is_grad_enabled() or in_mask is not None or x.device.type != "cpu" or p != len(cores) - 2:
        return False
    if capturing_graph() or torch.is_autocast_enabled("cpu"):
        return False
    (r0, m1, n1, r1), (_, m2, n2, _) = cores[-2].shape, cores[-1].shape
    merged = m1 * m2 * n1 * n2 * r0  # per m1*m2 input values: one GEMM into (n1 n2 r0)
    two = m1 * m2 * n2 * r1 + m1 * n2 * r1 * n1 * r0  # into (n2 r1) per m1 row, then over (m1, r1)
    return 4 * two <= 3 * merged and m1 * m2 * n2 * r1 >= _MIN_STEP_MACS


def _tt_linear_two_steps(x, cores, scale, shift, chunk_rows):
    """`tt_linear` without autograd or bias (`_two_steps_pay`), contracting the last two modes one
    after the other instead of through their merged matrix: m1 m2 n2 r1 + m1 n2 r1 n1 r0
    multiply-adds per m1 m2 inputs instead of m1 m2 n1 n2 r0 (10,880 instead of 23,040 for UCF11's
    20 x 18 -> 4 x 4 at rank 4), for x (R, P * m1 * m2), last cores G1 (r0, m1, n1, r1) and G2 (r1,
    m2, n2, 1). Per chunk of rows, as floats in a reused buffer:
    1. each run of m1 * m2 values, as the matrix X (m1, m2): Y = G2' X^T (n2 r1, m1), one batched
       matmul that writes the (r1, m1)-contiguous layout step 2 needs (no transpose);
    2. Y as rows (n2) of r1 m1 values times G1' (r1 m1, n1 r0): one GEMM, z (P, n2, n1, r0) per row;
    3. the leading modes, as `tt_linear`'s stage 2 (with the output modes n2, n1 swapped back at the
       end, in the small output rather than in z).
    The affine map is applied to the output: (x * a + b) W = a (x W) + b (1 W), 1 W from one run."""
    rows, D = x.shape
    (r0, m1, n1, r1), (_, m2, n2, _) = cores[-2].shape, cores[-1].shape
    P = D // (m1 * m2)
    At = cores[-1][..., 0].permute(2, 0, 1).reshape(n2 * r1, m2)  # (n2 r1, m2)
    Bm = cores[-2].permute(3, 1, 2, 0).reshape(r1 * m1, n1 * r0)  # (r1 m1, n1 r0)
    lead = _merge_cores(cores[:-2])[0] if len(cores) > 2 else Bm.new_ones((1, 1, 1))  # (P, N_p, r0)
    N_p = lead.shape[1]

    def contract(xf: torch.Tensor) -> torch.Tensor:  # floats (c, P * m1 * m2) -> (c, N_p, n2 n1)
        y = torch.matmul(At, xf.view(-1, m1, m2).transpose(1, 2))  # (c P, n2 r1, m1)
        z = (y.view(-1, r1 * m1) @ Bm).view(-1, P, n2 * n1, r0)  # (c, P, n2 n1, r0)
        return torch.einsum("cPJr,Pnr->cnJ", z, lead)

    chunk_rows = max(1, min(chunk_rows, _STEP_ELEMENTS // (P * n2 * r1 * m1)))  # Y stays in cache too
    out = Bm.new_empty((rows, N_p, n2 * n1))
    buf = Bm.new_empty((min(rows, chunk_rows), D))
    for c0 in range(0, rows, chunk_rows):
        c1 = min(rows, c0 + chunk_rows)
        out[c0:c1] = contract(buf[: c1 - c0].copy_(x[c0:c1]))
    ones = contract(Bm.new_ones((1, D)))  # 1 W: (1, N_p, n2 n1)
    out = torch.add(ones.mul_(shift), out, alpha=scale)  # b (1 W) + a (x W)
    return out.view(rows, N_p, n2, n1).transpose(2, 3).reshape(rows, N_p * n1 * n2)


def _first_stage_plain(x, A, scale, shift, in_mask, mask_index):  # noqa: N803 (A is a matrix)
    """`_FirstStage` in plain tensor ops, one GEMM on the whole float input: the same math (the same
    affine folding) for torch.jit.trace, torch.export and the ONNX exporters; autograd works too."""
    rows, D = x.shape
    K, J = A.shape
    xf = x.to(A.dtype)  # (rows, D)
    if in_mask is None:  # (x * a + b) @ A = a * (x @ A) + b * colsum(A)
        return torch.addmm(shift * A.sum(0, keepdim=True), xf.view(-1, K), A, alpha=scale)  # (rows * D/K, J)
    xf = (xf * scale + shift) * in_mask.index_select(0, mask_index)  # (rows, D)
    return xf.view(-1, K) @ A  # (rows * D/K, J)


class _ChunkPrep:
    """Writes rows c0:c1 of x as floats into a reused buffer: the raw values without a mask (the
    affine map is then folded into the GEMM), else (x * scale + shift) * mask[mask_index] computed
    as x * (scale * mask) + shift * mask over runs of rows that share a mask row (a clip's frames),
    two passes and no gathered copy of the mask."""

    def __init__(self, x, scale, shift, in_mask, mask_index):
        self.x = x
        self.masked = in_mask is not None
        if self.masked:
            self.mul = in_mask * scale  # (G, D)
            self.add = in_mask * shift if shift != 0.0 else None  # (G, D)
            idx, counts = torch.unique_consecutive(mask_index.cpu(), return_counts=True)
            ends = counts.cumsum(0).tolist()
            self.starts = [0, *ends[:-1]]
            self.runs = list(zip(self.starts, ends, idx.tolist()))  # (start, end, mask row)

    def __call__(self, buf, c0, c1):
        xc = buf[: c1 - c0]
        if not self.masked:
            return xc.copy_(self.x[c0:c1])
        for a, b, g in self.runs[bisect.bisect_right(self.starts, c0) - 1 :]:
            if a >= c1:
                break
            a, b = max(a, c0), min(b, c1)
            torch.mul(self.x[a:b], self.mul[g], out=xc[a - c0 : b - c0])
            if self.add is not None:
                xc[a - c0 : b - c0].add_(self.add[g])
        return xc


class TTLinear(nn.Module):
    """y = x @ W.T + b with W (prod(out_modes), prod(in_modes)) stored as TT cores.

    forward(x) accepts any leading batch dims `(..., prod(in_modes))` and any real or uint8 dtype;
    the optional keyword arguments fold input normalization and input dropout into the chunked first
    contraction (see module docstring): the layer computes `W @ ((x * in_scale + in_shift) * mask) + b`
    where, for x viewed as rows `(R, D)`, row i uses `in_mask[in_mask_index[i]]`.
    """

    def __init__(
        self,
        *,
        in_modes: Sequence[int],
        out_modes: Sequence[int],
        ranks: Sequence[int],
        bias: bool = True,
        init: str = "glorot",
        merge: int | None = None,
    ) -> None:
        """ranks has len(in_modes) + 1 entries, first and last 1. init: "glorot" or "he" variance of
        the reconstructed matrix. merge: trailing modes contracted by the first GEMM (None: auto)."""
        super().__init__()
        self.in_modes = tuple(int(m) for m in in_modes)
        self.out_modes = tuple(int(n) for n in out_modes)
        self.ranks = tuple(int(r) for r in ranks)
        d = len(self.in_modes)
        assert d >= 1 and len(self.out_modes) == d, (
            f"in_modes {self.in_modes} and out_modes {self.out_modes} need the same length >= 1"
        )
        assert len(self.ranks) == d + 1, f"ranks {self.ranks} must have len(in_modes) + 1 = {d + 1} entries"
        assert self.ranks[0] == 1 and self.ranks[-1] == 1, f"ranks {self.ranks} must start and end with 1"
        assert min(self.in_modes + self.out_modes + self.ranks) >= 1, "modes and ranks must be >= 1"
        assert init in ("glorot", "he"), f"init must be 'glorot' or 'he', got {init!r}"
        self.in_features = _prod(self.in_modes)
        self.out_features = _prod(self.out_modes)
        self.init = init
        self.merge = _default_merge(self.in_modes) if merge is None else int(merge)
        assert 1 <= self.merge <= d, f"merge must be in 1..{d}, got {self.merge}"
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(self.ranks[k], self.in_modes[k], self.out_modes[k], self.ranks[k + 1]))
            for k in range(d)
        )
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.approximation_error: float | None = None  # set by from_dense: ||W - W_tt||_F / ||W||_F
        self.reset_parameters()

    # ----------------------------------------------------------------------------------------- init
    def target_std(self) -> float:
        """Std of W the init aims at: Glorot sqrt(2 / (in + out)) or He sqrt(2 / in)."""
        if self.init == "he":
            return math.sqrt(2.0 / self.in_features)
        return math.sqrt(2.0 / (self.in_features + self.out_features))

    def core_std(self) -> float:
        """Per-core std s with Var(W) = prod(ranks[1:-1]) * s**(2d) = target_std**2.

        Each W entry sums prod(ranks[1:-1]) products of d independent zero-mean core entries.
        """
        d = len(self.in_modes)
        inner = _prod(self.ranks[1:-1])
        return (self.target_std() ** 2 / inner) ** (1.0 / (2 * d))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.cores[0].is_meta:  # built for its shapes only (a checkpoint fills the values)
            return
        std = self.core_std()
        for core in self.cores:
            core.normal_(0.0, std)
        if self.bias is not None:
            self.bias.zero_()

    # -------------------------------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        *,
        in_scale: float = 1.0,
        in_shift: float = 0.0,
        in_mask: torch.Tensor | None = None,
        in_mask_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return tt_linear(
            x,
            list(self.cores),
            self.bias,
            merge=self.merge,
            in_scale=in_scale,
            in_shift=in_shift,
            in_mask=in_mask,
            in_mask_index=in_mask_index,
        )

    # ------------------------------------------------------------------------------------ utilities
    def dense_weight(self) -> torch.Tensor:
        """The full matrix W of shape (out_features, in_features), nn.Linear.weight orientation."""
        return _merge_cores(list(self.cores))[0, :, :, 0].t()  # (N, M)

    def num_params(self, *, include_bias: bool = True) -> int:
        """Number of parameters: the cores, plus the bias unless include_bias=False."""
        n = sum(c.numel() for c in self.cores)
        if include_bias and self.bias is not None:
            n += self.bias.numel()
        return n

    def compression_rate(self) -> float:
        """Dense weight entries per TT core parameter (biases excluded on both sides)."""
        return self.in_features * self.out_features / self.num_params(include_bias=False)

    def compression_summary(self) -> str:
        """One line: core parameters vs the dense matrix, e.g. for logs and the param table."""
        dense = self.in_features * self.out_features
        tt = self.num_params(include_bias=False)
        return (
            f"TTLinear {self.in_modes}->{self.out_modes} ranks {self.ranks}: {tt:,} core params vs "
            f"{dense:,} dense ({self.compression_rate():,.1f}x compression)"
        )

    def extra_repr(self) -> str:
        return (
            f"in_modes={self.in_modes}, out_modes={self.out_modes}, ranks={self.ranks}, "
            f"bias={self.bias is not None}, merge={self.merge}"
        )

    @classmethod
    def from_dense(
        cls,
        weight: torch.Tensor,
        *,
        in_modes: Sequence[int],
        out_modes: Sequence[int],
        ranks: Sequence[int],
        bias: torch.Tensor | None = None,
    ) -> TTLinear:
        """Approximate a dense (out_features, in_features) weight by TT-SVD (Oseledets 2011).

        Ranks larger than the matrix allows are zero-padded. The layer gets the weight's dtype and
        device. The relative Frobenius error is stored in `approximation_error` and logged.
        """
        layer = cls(in_modes=in_modes, out_modes=out_modes, ranks=ranks, bias=bias is not None)
        layer = layer.to(dtype=weight.dtype, device=weight.device)
        assert tuple(weight.shape) == (layer.out_features, layer.in_features), (
            f"weight shape {tuple(weight.shape)} != ({layer.out_features}, {layer.in_features})"
        )
        cores = tt_svd(weight, in_modes=layer.in_modes, out_modes=layer.out_modes, ranks=layer.ranks)
        with torch.no_grad():
            for p, c in zip(layer.cores, cores):
                p.copy_(c)
            if bias is not None:
                layer.bias.copy_(bias)
            w = weight.detach().to(torch.float64)
            err = torch.linalg.norm(layer.dense_weight().to(torch.float64) - w) / torch.linalg.norm(
                w
            ).clamp_min(1e-300)
        layer.approximation_error = float(err)
        log.info("TT-SVD relative error %.3g for %s", layer.approximation_error, layer.compression_summary())
        return layer


def tt_linear(
    x: torch.Tensor,
    cores: Sequence[torch.Tensor],
    bias: torch.Tensor | None = None,
    *,
    merge: int | None = None,
    in_scale: float = 1.0,
    in_shift: float = 0.0,
    in_mask: torch.Tensor | None = None,
    in_mask_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Functional TTLinear: x (..., prod m_k) -> (..., prod n_k) for cores (r_{k-1}, m_k, n_k, r_k).

    Two contractions (see module docstring): stage 1 (big, chunked) contracts the last `merge` modes
    with those cores merged into A; stage 2 (small) the leading modes with those cores merged into B.
    """
    in_modes = [c.shape[1] for c in cores]
    D, N = math.prod(in_modes), math.prod(c.shape[2] for c in cores)
    assert x.shape[-1] == D, f"last dim {x.shape[-1]} != prod(in_modes {tuple(in_modes)}) = {D}"
    lead = x.shape[:-1]
    x2 = x.reshape(-1, D)  # (R, D)
    R = x2.shape[0]
    if in_mask is not None:
        assert in_mask_index is not None and in_mask_index.shape == (R,), (
            f"in_mask needs in_mask_index of shape ({R},)"
        )
        assert in_mask.dim() == 2 and in_mask.shape[1] == D, f"in_mask must be (G, {D})"
        in_mask = in_mask.to(cores[0].dtype)
    else:
        in_mask_index = None
    p = len(cores) - (_default_merge(in_modes) if merge is None else merge)  # modes left for stage 2
    assert 0 <= p < len(cores), f"merge must be in 1..{len(cores)}"
    # caches matter on CPU; a GPU takes the whole float batch at once (fewer kernel launches)
    chunk_rows = max(1, _CHUNK_ELEMENTS // D) if x.device.type == "cpu" else max(1, R)
    if _two_steps_pay(x2, cores, p, in_mask):  # inference: the same map in about half the FLOPs
        y = _tt_linear_two_steps(x2, cores, float(in_scale), float(in_shift), chunk_rows)
        return (y if bias is None else y + bias).view(*lead, N)
    suffix = _merge_cores(cores[p:])[..., 0]  # (r_p, K, J)
    r_p, K, J = suffix.shape
    A = suffix.permute(1, 2, 0).reshape(K, J * r_p)  # (K, J * r_p), columns (j..., r)
    if capturing_graph():  # exporters cannot record a Python autograd.Function nor a chunk loop
        z = _first_stage_plain(x2, A, float(in_scale), float(in_shift), in_mask, in_mask_index)
    else:
        z = _FirstStage.apply(x2, A, float(in_scale), float(in_shift), in_mask, in_mask_index, chunk_rows)
    # z: (R * M_p, J * r_p)
    if p == 0:
        y = z.view(R, N)
    else:
        B = _merge_cores(cores[:p])[0]  # (M_p, N_p, r_p)
        z = z.view(R, B.shape[0], J, r_p)  # (R, M_p, J, r_p)
        y = torch.einsum("RmJr,mnr->RnJ", z, B).reshape(R, N)  # (R, N): out index (n_1..n_p, n_p+1..n_d)
    if bias is not None:
        y = y + bias
    return y.view(*lead, N)


def tt_linear_reference(
    x: torch.Tensor,
    cores: Sequence[torch.Tensor],
    bias: torch.Tensor | None = None,
    *,
    in_scale: float = 1.0,
    in_shift: float = 0.0,
    in_mask: torch.Tensor | None = None,
    in_mask_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """`tt_linear` as the formula, slow; the tests compare the fast path with it.

    y = W @ ((x * in_scale + in_shift) * in_mask[in_mask_index]) + bias, with
    W[(j_1..j_d), (i_1..i_d)] = G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :], contracted one core at a
    time from the first (most significant) mode, on the whole float input: no merged cores, no affine
    folding, no chunks, no custom backward (autograd differentiates the einsums) and no code shared with
    the fast path, so that a mistake there cannot cancel out. There is no `merge`: it only chooses how
    the fast path splits the same contraction.
    """
    R, D = math.prod(x.shape[:-1]), x.shape[-1]
    t = x.reshape(R, D).to(cores[0].dtype) * in_scale + in_shift  # (R, D)
    if in_mask is not None:
        t = t * in_mask.to(t.dtype)[in_mask_index]  # (R, D)
    P, Q = 1, D  # P = n_1..n_{k-1} (output modes done), Q = m_k..m_d (input modes left)
    t = t.reshape(R, P, 1, Q)  # (R, P, r, Q) with r = r_0 = 1
    for core in cores:
        r, m, n, s = core.shape
        Q //= m
        t = t.reshape(R, P, r, m, Q)  # (R, P, r, m, Q)
        t = torch.einsum("RPrmQ,rmns->RPnsQ", t, core)  # (R, P, n, s, Q)
        P *= n
        t = t.reshape(R, P, s, Q)  # (R, P, r, Q) for the next core
    y = t.reshape(*x.shape[:-1], P)  # (..., N): s = r_d = 1, Q = 1
    return y if bias is None else y + bias


def _merge_cores(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Multiply consecutive cores (r_a, m, n, r) into one (r_a, prod m, prod n, r_b), row-major."""
    full = cores[0]
    for core in cores[1:]:
        a, M, N, _ = full.shape
        _, m, n, s = core.shape
        full = torch.einsum("aMNr,rmns->aMmNns", full, core).reshape(a, M * m, N * n, s)
    return full


def tt_svd(
    weight: torch.Tensor, *, in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int]
) -> list[torch.Tensor]:
    """TT cores (r_{k-1}, m_k, n_k, r_k) of a (prod(out_modes), prod(in_modes)) matrix by
    sequential truncated SVDs, computed in float64 and returned in the weight's dtype."""
    d = len(in_modes)
    w = weight.detach().to(torch.float64).t()  # (M, N)
    t = w.reshape(*in_modes, *out_modes)  # (m_1..m_d, n_1..n_d)
    t = t.permute(*[i for k in range(d) for i in (k, d + k)])  # (m_1, n_1, ..., m_d, n_d)
    cores = []
    r_prev = 1
    rest = t.reshape(in_modes[0] * out_modes[0], -1)  # (r_0 m_1 n_1, rest)
    for k in range(d - 1):
        u, s, vh = torch.linalg.svd(rest, full_matrices=False)
        r = min(int(ranks[k + 1]), s.numel())
        core = u[:, :r].reshape(r_prev, in_modes[k], out_modes[k], r)
        cores.append(_pad_rank(core, int(ranks[k]), int(ranks[k + 1])))
        rest = (s[:r, None] * vh[:r]).reshape(r * in_modes[k + 1] * out_modes[k + 1], -1)
        r_prev = r
    cores.append(_pad_rank(rest.reshape(r_prev, in_modes[-1], out_modes[-1], 1), int(ranks[-2]), 1))
    return [c.to(weight.dtype) for c in cores]


def _pad_rank(core: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    out = core.new_zeros((r0, core.shape[1], core.shape[2], r1))
    out[: core.shape[0], :, :, : core.shape[3]] = core
    return out


def balanced_modes(n: int, d: int = 4) -> tuple[int, ...]:
    """`d` factors of `n` (ascending, product exactly `n`), as equal as possible: the factorization
    with the smallest largest factor, ties broken by the largest smallest factor. A factor is 1 only
    when `n` has fewer than `d` prime factors. Used to pick TT modes for a frame size or hidden size
    (57,600 -> (15, 15, 16, 16); 2,304 -> (6, 6, 8, 8); 128 -> (2, 4, 4, 4))."""
    assert n >= 1 and d >= 1, "n and d must be positive"
    primes = _prime_factors(n)
    if len(primes) <= d:
        return tuple(sorted([1] * (d - len(primes)) + primes))
    best: tuple[int, ...] | None = None

    def search(rest: int, k: int, low: int, chosen: list[int]) -> None:
        nonlocal best
        if k == 1:
            if rest >= low:
                cand = (*chosen, rest)
                if best is None or (cand[-1], -cand[0]) < (best[-1], -best[0]):
                    best = cand
            return
        f = low
        while f ** k <= rest:  # factors ascend: the smallest left is at most rest^(1/k)
            if rest % f == 0:
                search(rest // f, k - 1, f, [*chosen, f])
            f += 1

    search(n, d, 2, [])
    assert best is not None, f"{n} has at least {d} prime factors, so {d} factors >= 2 exist"
    return best


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])
