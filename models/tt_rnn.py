"""TT-GRU and TT-LSTM video classifiers on raw pixels (Yang, Krompass, Tresp 2017, "Tensor-Train
Recurrent Neural Networks for Video Classification"; reference code Tuyki/TT_RNN).

The input-to-hidden map of the RNN is a TT layer (`models.tt.TTLinear`). By default ALL gates come
from ONE TT layer whose first output mode is multiplied by 3 (GRU) or 4 (LSTM), the paper's fused
trick (3,232 / 3,360 input-to-hidden parameters on UCF11 instead of 44,236,800); `separate_gates=True`
gives one TT layer per gate (the paper's "vanilla" TT-RNN, 4x the parameters for the LSTM).

Speed: the TT map does not depend on the recurrence, so it runs once on all valid frames of the
batch (padded frames are skipped), then a cheap loop over time does the recurrent part, on the clips
still running at each step only (the batch shrinks as clips end; no masking). In training, the
Keras GRU cell's loop is one autograd Function with a hand-written backward
(`models.gru_recurrence`); the cuDNN cell, the LSTM, inference and autocast run the per-step loop.

Model: uint8 pixels (B, T, H, W, 3) or (B, T, H*W*3) and lengths (B,) -> x / 255 - 0.5 (inside the
TT layer's chunked first contraction) -> TT map -> GRU/LSTM over time -> hidden state at each clip's
last valid frame -> linear classifier -> logits (B, K). Dropout as in the paper's Keras code: one
mask per clip on the input pixels and one on the recurrent state, shared over time (Gal & Ghahramani).
Differences from the Keras code, on purpose: gates use the logistic sigmoid (Keras defaulted to
hard_sigmoid), the TT cores are initialized so the reconstructed matrix has Glorot variance (the code
applied Glorot-uniform to the flat core vector, which saturates gates), pixels are normalized
instead of fed as x - 128, and the input bias is added once (the code's TT_GRU added it twice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from models.gru_recurrence import gru_recurrence
from models.pixels import (
    PIXEL_SCALE,
    PIXEL_SHIFT,
    capturing_graph,
    check_lengths,
    flatten_pixels,
    gal_mask,
    state_dtype,
)
from models.registry import register_model
from models.stream import ClipStream
from models.tt import TTLinear


@dataclass(frozen=True)
class TTGRUConfig:
    num_classes: int = 11  # K, size of the logits
    in_modes: tuple[int, ...] = (8, 20, 20, 18)  # factorization of H*W*3 (UCF11: 120*160*3 = 57,600)
    hidden_modes: tuple[int, ...] = (4, 4, 4, 4)  # TT out_modes of one gate; hidden size = prod = 256
    ranks: tuple[int, ...] = (1, 4, 4, 4, 1)  # TT ranks, len(in_modes) + 1 entries, first/last 1
    dropout: float = 0.25  # input-pixel dropout, one mask per clip shared over time
    recurrent_dropout: float = 0.25  # dropout on the recurrent state, one mask per clip
    separate_gates: bool = False  # True: one TT layer per gate (paper's "vanilla" variant)
    cell: str = "keras"  # "keras": reset gate before the recurrent matmul (paper's code); "cudnn": after
    init: str = "glorot"  # TT init variance of the reconstructed matrix: "glorot" or "he"


@dataclass(frozen=True)
class TTLSTMConfig:
    num_classes: int = 11  # K, size of the logits
    in_modes: tuple[int, ...] = (8, 20, 20, 18)  # factorization of H*W*3 (UCF11: 120*160*3 = 57,600)
    hidden_modes: tuple[int, ...] = (4, 4, 4, 4)  # TT out_modes of one gate; hidden size = prod = 256
    ranks: tuple[int, ...] = (1, 4, 4, 4, 1)  # TT ranks, len(in_modes) + 1 entries, first/last 1
    dropout: float = 0.25  # input-pixel dropout, one mask per clip shared over time
    recurrent_dropout: float = 0.25  # dropout on the recurrent state, one mask per clip
    separate_gates: bool = False  # True: one TT layer per gate (paper's "vanilla" variant)
    init: str = "glorot"  # TT init variance of the reconstructed matrix: "glorot" or "he"


class _TTRNNBase(nn.Module):
    """Shared parts: the TT input map over valid frames, dropout masks, the classifier."""

    num_gates: int
    num_states: int

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        assert 0.0 <= config.dropout < 1.0 and 0.0 <= config.recurrent_dropout < 1.0, "dropout in [0, 1)"
        self.hidden_size = math.prod(config.hidden_modes)
        self.in_features = math.prod(config.in_modes)
        G, H = self.num_gates, self.hidden_size
        if config.separate_gates:
            self.input_maps = nn.ModuleList(
                TTLinear(
                    in_modes=config.in_modes,
                    out_modes=config.hidden_modes,
                    ranks=config.ranks,
                    init=config.init,
                )
                for _ in range(G)
            )
        else:
            fused = (config.hidden_modes[0] * G, *config.hidden_modes[1:])  # gates = G blocks of H
            self.input_maps = nn.ModuleList(
                [TTLinear(in_modes=config.in_modes, out_modes=fused, ranks=config.ranks, init=config.init)]
            )
        self.recurrent_weight = nn.Parameter(torch.empty(H, G * H))  # (H, G*H): h @ U, gate blocks
        self.classifier = nn.Linear(H, config.num_classes)
        with torch.no_grad():
            for g in range(G):  # orthogonal per gate block, as Keras' recurrent_initializer
                nn.init.orthogonal_(self.recurrent_weight[:, g * H : (g + 1) * H])

    def input_map_num_params(self, *, include_bias: bool = False) -> int:
        """Parameters of the input-to-hidden map (the paper's count excludes biases)."""
        return sum(m.num_params(include_bias=include_bias) for m in self.input_maps)

    def _map_frames(self, rows: torch.Tensor, clip_of_row: torch.Tensor, in_mask: torch.Tensor | None) -> torch.Tensor:
        """TT map of frames: uint8 rows (N, D) -> gate inputs (N, G*H); `clip_of_row` (N,) picks each
        row's input-dropout mask from `in_mask` (B, D)."""
        kw = dict(in_scale=PIXEL_SCALE, in_shift=PIXEL_SHIFT, in_mask=in_mask, in_mask_index=clip_of_row)
        return torch.cat([m(rows, **kw) for m in self.input_maps], dim=-1)  # (N, G*H)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = flatten_pixels(x, self.in_features)  # (B, T, D)
        B, T, D = x.shape
        lengths = check_lengths(lengths, B, T, x.device)
        in_mask = rec_mask = None
        if self.training and self.config.dropout > 0:
            in_mask = gal_mask((B, D), self.config.dropout, self.recurrent_weight)  # (B, D)
        if self.training and self.config.recurrent_dropout > 0:
            rec_mask = gal_mask((B, self.hidden_size), self.config.recurrent_dropout, self.recurrent_weight)  # (B, H)
        clip = torch.arange(B, device=x.device)
        capturing = capturing_graph()
        if capturing or bool((lengths == T).all()):  # every frame (clips of one length, or a graph)
            gx = self._map_frames(x.reshape(B * T, D), clip.repeat_interleave(T), in_mask).view(B, T, -1)
            if capturing:
                # an exported graph runs all T steps with masks: which rows are valid depends on
                # the values of `lengths`, an input of the graph
                h = self._masked_loop(gx, lengths, rec_mask)
            else:
                h = self._recurrence(gx, None, rec_mask)
        else:
            # The valid frames only, mapped clip by clip on views of x (a gathered copy of them
            # would be a second batch of pixels, kept alive for backward), then their gates put in
            # the packed order of nn.GRU's PackedSequence: time-major, clips longest first, so
            # step t is the next sizes[t] rows -- the clips still running at t.
            gates = torch.cat([
                self._map_frames(x[i, :n], clip.new_full((n,), i), in_mask) for i, n in enumerate(lengths.tolist())
            ])  # (Nv, G*H), clip by clip
            sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)  # (B,), (B,)
            steps = torch.arange(int(sorted_lengths[0]), device=x.device)[:, None]  # (Tv, 1)
            running = steps < sorted_lengths[None, :]  # (Tv, B): sorted clip j still running at step t
            first_row = (torch.cumsum(lengths, 0) - lengths)[order]  # (B,) where each sorted clip's rows start
            gx = gates.index_select(0, (first_row[None, :] + steps)[running])  # (Nv, G*H), packed
            h = self._recurrence(gx, running.sum(1).tolist(), None if rec_mask is None else rec_mask[order])
            h = torch.empty_like(h).index_copy_(0, order, h)  # back to input order
        return self.classifier(h)  # (B, K)

    def stream(self) -> ClipStream:
        """A continuous, chunked batch for inference (see `models.stream.ClipStream`)."""
        return ClipStream(self)

    # -- the recurrent core, as `models.stream.ClipStream` runs it ---------------------------------

    def input_gates(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 frames (n, D) -> gate inputs (n, G*H): the TT map, no dropout."""
        return self._map_frames(rows, rows.new_zeros(rows.shape[0], dtype=torch.long), None)

    def zero_state(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The initial state of n clips, on `like`'s device (dtype: `state_dtype`)."""
        return tuple(like.new_zeros(n, self.hidden_size, dtype=state_dtype(like)) for _ in range(self.num_states))

    def step_weights(self) -> tuple[torch.Tensor, ...]:
        return self._step_weights()

    def cell(self, gx_t: torch.Tensor, state: tuple[torch.Tensor, ...], weights: tuple[torch.Tensor, ...]):
        """One inference step (no recurrent dropout)."""
        return self._cell(gx_t, state, None, weights)

    def _recurrence(self, gx: torch.Tensor, sizes: list[int] | None, rec_mask: torch.Tensor | None) -> torch.Tensor:
        """The recurrence over packed gate inputs gx (N, G*H) in steps of `sizes` rows, or over all
        T steps of gx (B, T, G*H) when `sizes` is None -> (B, H) as `_run_steps`. Here the per-step
        autograd loop; `TTGRU` overrides it with the fused Function where that applies."""
        # unbind / split (not gx[:, t] per step): backward concatenates the step gradients once
        # instead of scattering each into a full-size zero tensor
        return self._run_steps(gx.unbind(1) if sizes is None else gx.split(sizes), rec_mask)

    def _run_steps(self, steps: Sequence[torch.Tensor], rec_mask: torch.Tensor | None) -> torch.Tensor:
        """The recurrence over steps of non-increasing row counts (clips sorted longest first):
        step t holds the gate inputs (n_t, G*H) of the n_t clips still running, so the batch
        shrinks as clips end -- no masking, and the small per-step matmuls get cheaper as rows leave.
        Returns (B, H): each clip's state after its last step, in the sorted order."""
        state, weights = self._zero_state(steps[0]), self._step_weights()
        finished = []  # final states of the clips that ended, shortest last
        for gx_t in steps:
            n = gx_t.shape[0]
            if n < state[0].shape[0]:  # clips ended: keep their state, drop their rows
                finished.append(state[0][n:])
                state = tuple(s[:n] for s in state)
                rec_mask = None if rec_mask is None else rec_mask[:n]
            state = self._cell(gx_t, state, rec_mask, weights)
        finished.append(state[0])
        return torch.cat(finished[::-1])  # (B, H)

    def _masked_loop(self, gx: torch.Tensor, lengths: torch.Tensor, rec_mask: torch.Tensor | None) -> torch.Tensor:
        """The same recurrence with static shapes for graph capture: all T steps for every clip,
        padded steps keep the state (`torch.where`), since which rows run depends on `lengths`."""
        T = gx.shape[1]
        alive = (torch.arange(T, device=gx.device)[:, None] < lengths[None, :]).unsqueeze(-1)  # (T, B, 1)
        state, weights = self._zero_state(gx), self._step_weights()
        for gx_t, alive_t in zip(gx.unbind(1), alive):
            new = self._cell(gx_t, state, rec_mask, weights)
            state = tuple(torch.where(alive_t, a, b) for a, b in zip(new, state))
        return state[0]

    def _zero_state(self, gx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.zero_state(gx.shape[0], gx)  # (n, H) each

    def _step_weights(self) -> tuple[torch.Tensor, ...]:
        """The recurrent weights as `_cell` takes them, sliced once per forward, not per step (each
        per-step slice would cost a full-size zero gradient in backward)."""
        raise NotImplementedError

    def _cell(self, gx_t: torch.Tensor, state: tuple[torch.Tensor, ...], rec_mask: torch.Tensor | None,
              weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """One step: gate inputs gx_t (n, G*H) and the state of n clips -> their next state."""
        raise NotImplementedError


@register_model("tt_gru", TTGRUConfig)
class TTGRU(_TTRNNBase):
    """TT-GRU classifier. Gate order z (update), r (reset), h (candidate), as Keras."""

    num_gates = 3
    num_states = 1  # (h,)

    def __init__(self, config: TTGRUConfig) -> None:
        assert config.cell in ("keras", "cudnn"), f"cell must be 'keras' or 'cudnn', got {config.cell!r}"
        super().__init__(config)
        # The cuDNN cell adds a recurrent bias inside r * (U_h h + b_hh); Keras has only the input bias.
        H = self.hidden_size
        self.recurrent_bias = nn.Parameter(torch.zeros(3 * H)) if config.cell == "cudnn" else None
        # the Keras cell's training recurrence as one autograd Function (models/gru_recurrence.py);
        # False: the per-step autograd loop `_run_steps`, the reference
        self.fused_recurrence = True

    def _recurrence(self, gx, sizes, rec_mask):
        U = self.recurrent_weight
        fused = (
            self.fused_recurrence
            and self.config.cell == "keras"
            and torch.is_grad_enabled()
            and (gx.requires_grad or U.requires_grad)  # training: inference has no autograd to save
            and not torch.is_autocast_enabled(gx.device.type)  # autocast: state float32, the loop below
            and gx.dtype == U.dtype
        )
        if not fused:
            return super()._recurrence(gx, sizes, rec_mask)
        if sizes is None:  # all T steps of every clip: time-major rows, B per step
            B, T = gx.shape[:2]
            gx, sizes = gx.transpose(0, 1).reshape(B * T, -1), [B] * T
        return gru_recurrence(gx, sizes, *self._step_weights(), rec_mask)

    def _step_weights(self):
        U, H = self.recurrent_weight, self.hidden_size  # (H, 3H)
        return (U[:, : 2 * H], U[:, 2 * H :]) if self.config.cell == "keras" else (U,)

    def _cell(self, gx_t, state, rec_mask, weights):
        (h,) = state  # (n, H)
        H = self.hidden_size
        hd = h if rec_mask is None else h * rec_mask  # (n, H)
        if self.config.cell == "keras":
            U_zr, U_h = weights  # (H, 2H), (H, H)
            # in-place activations on the fresh matmul outputs: fewer ops and allocations per step
            z, r = torch.addmm(gx_t[:, : 2 * H], hd, U_zr).sigmoid_().chunk(2, dim=1)  # (n, H) each
            cand = torch.addmm(gx_t[:, 2 * H :], r * hd, U_h).tanh_()  # reset BEFORE the matmul
        else:
            (U,) = weights  # (H, 3H)
            gh = torch.addmm(self.recurrent_bias, hd, U)  # (n, 3H)
            zr = torch.sigmoid(gx_t[:, : 2 * H] + gh[:, : 2 * H])
            z, r = zr[:, :H], zr[:, H:]
            cand = torch.tanh(gx_t[:, 2 * H :] + r * gh[:, 2 * H :])  # reset AFTER matmul
        # z * h + (1 - z) * cand, one op; under autocast the matmuls give bfloat16 and the state
        # stays in its own dtype (float32), so rounding does not build up over the steps
        return (torch.lerp(cand.to(h.dtype), h, z.to(h.dtype)),)


@register_model("tt_lstm", TTLSTMConfig)
class TTLSTM(_TTRNNBase):
    """TT-LSTM classifier. Gate order i, f, c, o, as Keras; forget-gate bias starts at 1."""

    num_gates = 4
    num_states = 2  # (h, c)

    def __init__(self, config: TTLSTMConfig) -> None:
        super().__init__(config)
        H = self.hidden_size
        with torch.no_grad():  # Keras unit_forget_bias: the f block of the input bias is 1
            if config.separate_gates:
                self.input_maps[1].bias.fill_(1.0)
            else:
                self.input_maps[0].bias[H : 2 * H].fill_(1.0)

    def _step_weights(self):
        return (self.recurrent_weight,)  # (H, 4H)

    def _cell(self, gx_t, state, rec_mask, weights):
        h, c = state  # (n, H) each
        H = self.hidden_size
        hd = h if rec_mask is None else h * rec_mask
        a = torch.addmm(gx_t, hd, weights[0])  # (n, 4H)
        i, f, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H]), torch.sigmoid(a[:, 3 * H :])
        c = f * c + i * torch.tanh(a[:, 2 * H : 3 * H])
        return o * torch.tanh(c), c
