"""Plain GRU / LSTM classifiers on raw pixels: the baselines of Yang et al. 2017 (TT-RNN paper),
whose input-to-hidden matrix is dense (57,600 x 768 = 44,236,800 weights for the UCF11 GRU).

Same interface as the TT-RNNs: uint8 pixels (B, T, H, W, 3) or (B, T, D) plus lengths -> logits
(B, K); pixels are normalized to x / 255 - 0.5 inside. Built on nn.GRU / nn.LSTM with packed
sequences, so the final state is each clip's state at its own last valid frame and padding cannot
change the logits (an exported graph runs all steps and gathers each clip's output at its last valid
frame instead, see `models.pixels.capturing_graph`). nn.GRU is the cuDNN-style cell (reset gate
after the recurrent matmul) and has no recurrent dropout; the input gets the same per-clip pixel
dropout as the TT models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

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


@dataclass(frozen=True)
class GRUConfig:
    num_classes: int = 11  # K, size of the logits
    input_size: int = 57600  # values per frame, H*W*3 (UCF11: 120*160*3)
    hidden_size: int = 256  # the paper's 4x4x4x4
    dropout: float = 0.25  # input-pixel dropout, one mask per clip shared over time


@dataclass(frozen=True)
class LSTMConfig:
    num_classes: int = 11  # K, size of the logits
    input_size: int = 57600  # values per frame, H*W*3 (UCF11: 120*160*3)
    hidden_size: int = 256  # the paper's 4x4x4x4
    dropout: float = 0.25  # input-pixel dropout, one mask per clip shared over time


class _PlainRNN(nn.Module):
    rnn_cls: type[nn.RNNBase]

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        assert 0.0 <= config.dropout < 1.0, f"dropout must be in [0, 1), got {config.dropout}"
        self.rnn = self.rnn_cls(config.input_size, config.hidden_size, batch_first=True)
        self.classifier = nn.Linear(config.hidden_size, config.num_classes)
        self.in_features, self.hidden_size = config.input_size, config.hidden_size

    def input_map_num_params(self, *, include_bias: bool = False) -> int:
        """Parameters of the input-to-hidden map (the paper's count excludes biases)."""
        n = self.rnn.weight_ih_l0.numel()
        return n + (self.rnn.bias_ih_l0.numel() if include_bias else 0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = flatten_pixels(x, self.config.input_size)  # (B, T, D)
        B, T, D = x.shape
        lengths = check_lengths(lengths, B, T, x.device)
        dtype = self.classifier.weight.dtype
        x = x.to(dtype) * PIXEL_SCALE + PIXEL_SHIFT  # (B, T, D) float
        if self.training and self.config.dropout > 0:
            x = x * gal_mask((B, 1, D), self.config.dropout, x)
        if capturing_graph():  # exporters cannot record packing: run all T steps, pick each clip's last
            out, _ = self.rnn(x)  # (B, T, H); causal, so step L-1 is the state after the clip's frames
            last = (lengths - 1)[:, None, None].expand(-1, 1, out.shape[-1])  # (B, 1, H)
            return self.classifier(out.gather(1, last).squeeze(1))  # (B, K)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # (1, B, H), in the input's batch order
        return self.classifier(h[-1])  # (B, K)


    def stream(self) -> ClipStream:
        """A continuous, chunked batch for inference (see `models.stream.ClipStream`)."""
        return ClipStream(self)

    # -- the recurrent core, as `models.stream.ClipStream` runs it: nn.GRU / nn.LSTM's own cell
    # equations (the torch.nn docs), one step at a time

    def input_gates(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 frames (n, D) -> W_ih x + b_ih (n, G*H)."""
        x = rows.to(self.classifier.weight.dtype) * PIXEL_SCALE + PIXEL_SHIFT
        return F.linear(x, self.rnn.weight_ih_l0, self.rnn.bias_ih_l0)

    def zero_state(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(like.new_zeros(n, self.hidden_size, dtype=state_dtype(like)) for _ in range(self.num_states))

    def step_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rnn.weight_hh_l0.t(), self.rnn.bias_hh_l0  # (H, G*H), (G*H,)


@register_model("gru", GRUConfig)
class GRU(_PlainRNN):
    """Plain GRU on pixels (dense input-to-hidden matrix)."""

    rnn_cls = nn.GRU
    num_states = 1  # (h,)

    def cell(self, gx_t, state, weights):
        (h,) = state  # (n, H)
        U, b = weights
        gh = torch.addmm(b, h.to(U.dtype), U)  # (n, 3H): r, z, n blocks
        H = self.hidden_size
        r, z = torch.sigmoid(gx_t[:, : 2 * H] + gh[:, : 2 * H]).chunk(2, dim=1)
        n = torch.tanh(gx_t[:, 2 * H :] + r * gh[:, 2 * H :])  # reset after the matmul (cuDNN)
        return (torch.lerp(n.to(h.dtype), h, z.to(h.dtype)),)  # (1 - z) * n + z * h


@register_model("lstm", LSTMConfig)
class LSTM(_PlainRNN):
    """Plain LSTM on pixels (dense input-to-hidden matrix)."""

    rnn_cls = nn.LSTM
    num_states = 2  # (h, c)

    def cell(self, gx_t, state, weights):
        h, c = state  # (n, H) each
        U, b = weights
        a = gx_t + torch.addmm(b, h.to(U.dtype), U)  # (n, 4H): i, f, g, o blocks
        i, f, g, o = a.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return (torch.sigmoid(o) * torch.tanh(c)).to(h.dtype), c.to(c.dtype)
