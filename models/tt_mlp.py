"""TT-MLP: the non-recurrent baseline of Yang et al. 2017 (TT-RNN paper): a few frames of a clip
sampled in order, concatenated into one vector, mapped by a TT layer to a hidden layer, then a
classifier. It tells how much the recurrence adds over a TT layer that sees several frames at once.

Our choice of shape (the authors' repository Tuyki/TT_RNN has no TT-MLP video script, so this is
documented rather than copied): `num_frames` = 6 frames at the centres of 6 equal segments of each
clip's VALID length (so padding cannot change them; short clips repeat frames); the concatenation
(6, H, W, 3) is tensorized by multiplying the first per-frame input mode by 6
(UCF11: 48x20x20x18 = 345,600), the same trick as the fused TT-RNN gates; TT hidden layer
4x4x4x4 = 256 with ranks (1,4,4,4,1) and a bias (3,616 core parameters on UCF11), ReLU, dropout,
linear classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.pixels import PIXEL_SCALE, PIXEL_SHIFT, check_lengths, flatten_pixels
from models.registry import register_model
from models.tt import TTLinear


@dataclass(frozen=True)
class TTMLPConfig:
    num_classes: int = 11  # K, size of the logits
    num_frames: int = 6  # frames sampled evenly over each clip's valid length, in order
    in_modes: tuple[int, ...] = (8, 20, 20, 18)  # factorization of ONE frame, H*W*3 (UCF11)
    hidden_modes: tuple[int, ...] = (4, 4, 4, 4)  # TT out_modes; hidden size = prod = 256
    ranks: tuple[int, ...] = (1, 4, 4, 4, 1)  # TT ranks, len(in_modes) + 1 entries, first/last 1
    dropout: float = 0.25  # dropout on the hidden layer
    init: str = "he"  # TT init variance of the reconstructed matrix (He: a ReLU follows)


def sample_frame_indices(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B,) lengths -> (B, num_frames) indices at the centres of num_frames equal segments."""
    k = torch.arange(num_frames, device=lengths.device)  # (F,)
    return ((2 * k[None, :] + 1) * lengths[:, None]) // (2 * num_frames)  # (B, F), in [0, L-1]


@register_model("tt_mlp", TTMLPConfig)
class TTMLP(nn.Module):
    def __init__(self, config: TTMLPConfig) -> None:
        super().__init__()
        self.config = config
        assert config.num_frames >= 1, "num_frames must be >= 1"
        assert 0.0 <= config.dropout < 1.0, f"dropout must be in [0, 1), got {config.dropout}"
        self.frame_features = math.prod(config.in_modes)
        in_modes = (config.in_modes[0] * config.num_frames, *config.in_modes[1:])  # frame index leads
        self.input_map = TTLinear(
            in_modes=in_modes, out_modes=config.hidden_modes, ranks=config.ranks, init=config.init
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.input_map.out_features, config.num_classes)

    def input_map_num_params(self, *, include_bias: bool = False) -> int:
        """Parameters of the TT input layer (biases excluded unless asked)."""
        return self.input_map.num_params(include_bias=include_bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = flatten_pixels(x, self.frame_features)  # (B, T, D)
        B, T, D = x.shape
        lengths = check_lengths(lengths, B, T, x.device)
        idx = sample_frame_indices(lengths, self.config.num_frames)  # (B, F)
        frames = torch.gather(x, 1, idx[:, :, None].expand(-1, -1, D))  # (B, F, D), still uint8
        h = self.input_map(frames.reshape(B, -1), in_scale=PIXEL_SCALE, in_shift=PIXEL_SHIFT)  # (B, 256)
        return self.classifier(self.dropout(torch.relu(h)))  # (B, K)
