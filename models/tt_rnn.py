"""TT-GRU and TT-LSTM video classifiers on raw pixels (Yang, Krompass, Tresp 2017, "Tensor-Train
Recurrent Neural Networks for Video Classification"; reference code Tuyki/TT_RNN).

The input-to-hidden map of the RNN is a TT layer (`models.tt.TTLinear`). By default ALL gates come
from ONE TT layer whose first output mode is multiplied by 3 (GRU) or 4 (LSTM), the paper's fused
trick (3,232 / 3,360 input-to-hidden parameters on UCF11 instead of 44,236,800); `separate_gates=True`
gives one TT layer per gate (the paper's "vanilla" TT-RNN, 4x the parameters for the LSTM).

Speed: the TT map does not depend on the recurrence, so it runs once on all valid frames of the
batch (padded frames are skipped), then a cheap loop over time does the recurrent part.

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
from dataclasses import dataclass

import torch
from torch import nn

from models.pixels import PIXEL_SCALE, PIXEL_SHIFT, capturing_graph, check_lengths, flatten_pixels, gal_mask
from models.registry import register_model
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

    def _input_gates(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """TT map of every valid frame: x (B, T, D) -> (B, T, G*H), zeros at padded steps."""
        B, T, D = x.shape
        valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T)
        rows = x.reshape(B * T, D)  # (B*T, D)
        seq_of_row = torch.arange(B, device=x.device).repeat_interleave(T)  # (B*T,)
        # an exported graph maps every frame (padded ones too: their gates are ignored by `alive`),
        # since which rows are valid depends on the values of `lengths`
        all_valid = capturing_graph() or bool(valid.all())
        if not all_valid:  # skip padded frames: copy only the valid uint8 rows
            idx = valid.reshape(-1).nonzero().squeeze(1)  # (Nv,)
            rows, seq_of_row = rows.index_select(0, idx), seq_of_row.index_select(0, idx)
        mask = None
        if self.training and self.config.dropout > 0:
            mask = gal_mask((B, D), self.config.dropout, self.recurrent_weight)  # (B, D)
        kw = dict(in_scale=PIXEL_SCALE, in_shift=PIXEL_SHIFT, in_mask=mask, in_mask_index=seq_of_row)
        gates = torch.cat([m(rows, **kw) for m in self.input_maps], dim=-1)  # (Nv, G*H)
        if all_valid:
            return gates.view(B, T, -1)  # (B, T, G*H)
        out = gates.new_zeros(B * T, gates.shape[-1]).index_copy(0, idx, gates)  # (B*T, G*H)
        return out.view(B, T, -1)  # (B, T, G*H)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = flatten_pixels(x, self.in_features)  # (B, T, D)
        B, T, D = x.shape
        lengths = check_lengths(lengths, B, T, x.device)
        # steps beyond every clip's length are never computed (an exported graph runs all T steps)
        Tv = T if capturing_graph() else int(lengths.max())
        gx = self._input_gates(x, lengths)[:, :Tv]  # (B, Tv, G*H)
        rec_mask = None
        if self.training and self.config.recurrent_dropout > 0:
            rec_mask = gal_mask((B, self.hidden_size), self.config.recurrent_dropout, gx)  # (B, H)
        # unbind (not gx[:, t]) so that backward stacks the step gradients once instead of
        # scattering each into a full-size zero tensor
        steps = gx.unbind(1)  # Tv x (B, G*H)
        alive = (torch.arange(Tv, device=x.device)[:, None] < lengths[None, :]).unsqueeze(-1)  # (Tv, B, 1)
        h = self._run(steps, alive, rec_mask)  # (B, H): state after each clip's last valid step
        return self.classifier(h)  # (B, K)

    def _run(self, steps, alive, rec_mask) -> torch.Tensor:
        raise NotImplementedError


def _all_alive_steps(alive: torch.Tensor) -> int:
    """How many leading steps every sequence is alive in (alive: (T, B, 1) bool). An exported graph
    gets 0: there the lengths are inputs, so every step keeps its mask."""
    if capturing_graph():
        return 0
    return int(alive.all(dim=2).all(dim=1).long().cumprod(0).sum())


@register_model("tt_gru", TTGRUConfig)
class TTGRU(_TTRNNBase):
    """TT-GRU classifier. Gate order z (update), r (reset), h (candidate), as Keras."""

    num_gates = 3

    def __init__(self, config: TTGRUConfig) -> None:
        assert config.cell in ("keras", "cudnn"), f"cell must be 'keras' or 'cudnn', got {config.cell!r}"
        super().__init__(config)
        # The cuDNN cell adds a recurrent bias inside r * (U_h h + b_hh); Keras has only the input bias.
        H = self.hidden_size
        self.recurrent_bias = nn.Parameter(torch.zeros(3 * H)) if config.cell == "cudnn" else None

    def _run(self, steps, alive, rec_mask) -> torch.Tensor:
        H = self.hidden_size
        U = self.recurrent_weight  # (H, 3H)
        # sliced once, not per step: each per-step slice would cost a full-size zero gradient
        U_zr, U_h = U[:, : 2 * H], U[:, 2 * H :]  # (H, 2H), (H, H)
        h = steps[0].new_zeros(steps[0].shape[0], H)  # (B, H)
        all_alive = _all_alive_steps(alive)  # steps where no sequence has ended: no masking needed
        for t, (gx_t, alive_t) in enumerate(zip(steps, alive)):
            hd = h if rec_mask is None else h * rec_mask  # (B, H)
            if self.config.cell == "keras":
                zr = torch.sigmoid(torch.addmm(gx_t[:, : 2 * H], hd, U_zr))  # (B, 2H)
                z, r = zr[:, :H], zr[:, H:]
                cand = torch.tanh(torch.addmm(gx_t[:, 2 * H :], r * hd, U_h))  # reset BEFORE the matmul
            else:
                gh = torch.addmm(self.recurrent_bias, hd, U)  # (B, 3H)
                zr = torch.sigmoid(gx_t[:, : 2 * H] + gh[:, : 2 * H])
                z, r = zr[:, :H], zr[:, H:]
                cand = torch.tanh(gx_t[:, 2 * H :] + r * gh[:, 2 * H :])  # reset AFTER matmul
            h_new = torch.lerp(cand, h, z)  # z * h + (1 - z) * cand, one op
            h = h_new if t < all_alive else torch.where(alive_t, h_new, h)  # padded steps keep the state
        return h


@register_model("tt_lstm", TTLSTMConfig)
class TTLSTM(_TTRNNBase):
    """TT-LSTM classifier. Gate order i, f, c, o, as Keras; forget-gate bias starts at 1."""

    num_gates = 4

    def __init__(self, config: TTLSTMConfig) -> None:
        super().__init__(config)
        H = self.hidden_size
        with torch.no_grad():  # Keras unit_forget_bias: the f block of the input bias is 1
            if config.separate_gates:
                self.input_maps[1].bias.fill_(1.0)
            else:
                self.input_maps[0].bias[H : 2 * H].fill_(1.0)

    def _run(self, steps, alive, rec_mask) -> torch.Tensor:
        H = self.hidden_size
        U = self.recurrent_weight  # (H, 4H)
        h = steps[0].new_zeros(steps[0].shape[0], H)  # (B, H)
        c = torch.zeros_like(h)
        all_alive = _all_alive_steps(alive)
        for t, (gx_t, alive_t) in enumerate(zip(steps, alive)):
            hd = h if rec_mask is None else h * rec_mask
            a = torch.addmm(gx_t, hd, U)  # (B, 4H)
            i, f, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H]), torch.sigmoid(a[:, 3 * H :])
            c_new = f * c + i * torch.tanh(a[:, 2 * H : 3 * H])
            h_new = o * torch.tanh(c_new)
            if t < all_alive:
                c, h = c_new, h_new
            else:  # padded steps keep the state
                c = torch.where(alive_t, c_new, c)
                h = torch.where(alive_t, h_new, h)
        return h
