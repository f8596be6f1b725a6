"""YouTube-8M starter-code baselines (Abu-El-Haija et al. 2016, github.com/google/youtube-8m).

`video_level_models.py`: `logistic` and `moe` (2 logistic experts + a dummy expert that always says
"no", gate softmax over M + 1). `frame_level_models.py`: `frame_logistic` (mean over the true frames),
`dbof` (deep bag of frames) and `frame_lstm` (2 x 1024 LSTM), both followed by the MoE classifier
like the starter's default `video_level_classifier_model = MoeModel`.

All take `x (B, T, 1152)` float features plus `lengths (B,)` (video-level features: T = 1),
l2-normalize every frame's 1152-d vector first (the starter's `tf.nn.l2_normalize` on the input),
and return LOGITS `(B, K)` for `BCEWithLogitsLoss`. The MoE predicts a probability mixture p; it
returns logit(p) = log p - log(1 - p), both terms computed exactly in log space, so sigmoid(logits)
is the starter's p with no clamping and no overflow.

Departures from the starter: the `logistic` and `moe` models also accept frame-level input (they
average the true frames, which makes `frame_logistic` the same computation); DBoF samples its
`iterations` frames at random only in training and takes evenly spaced frames in evaluation (the
starter samples at random in evaluation too), so evaluation is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from models.common import FEATURE_DIM, NUM_CLASSES, l2_normalize_frames, make_classifier, masked_mean
from models.onednn import Linear
from models.registry import register_model

# ------------------------------------------------------------------------------------------------
# Video-level models


@dataclass(frozen=True)
class LogisticConfig:
    num_classes: int = NUM_CLASSES  # K, the vocabulary size
    input_size: int = FEATURE_DIM  # D, 1024 rgb + 128 audio
    l2_normalize: bool = True  # per-frame l2 normalization of the input, as the starter does
    batch_norm: bool = False  # batch norm on the (averaged) input before the classifier
    dropout: float = 0.0  # dropout on the classifier's input (training only)


def _input_layers(config: LogisticConfig | MoEConfig) -> nn.Module:
    """Batch norm and dropout on the averaged input vector, as the config asks (identity by default)."""
    layers = [nn.BatchNorm1d(config.input_size)] if config.batch_norm else []
    return nn.Sequential(*layers, nn.Dropout(config.dropout)) if config.dropout > 0 else nn.Sequential(*layers)


@register_model("logistic", LogisticConfig)
class LogisticClassifier(nn.Module):
    """The starter's LogisticModel: one linear layer (sigmoid in the loss). Frames are averaged."""

    def __init__(self, config: LogisticConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = _input_layers(config)
        self.classifier = Linear(config.input_size, config.num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        if self.config.l2_normalize:
            x = l2_normalize_frames(x)
        return self.classifier(self.inputs(masked_mean(x, lengths)))  # (B, K)


@dataclass(frozen=True)
class FrameLogisticConfig(LogisticConfig):
    pass


@register_model("frame_logistic", FrameLogisticConfig)
class FrameLogisticClassifier(LogisticClassifier):
    """The starter's FrameLevelLogisticModel: logistic regression on the mean of the true frames."""


@dataclass(frozen=True)
class MoEConfig:
    num_classes: int = NUM_CLASSES  # K
    input_size: int = FEATURE_DIM  # D
    num_mixtures: int = 2  # M logistic experts, plus the dummy expert that always predicts 0
    init_prior: float = 0.0  # if > 0: every class starts at this probability (0: the starter's init)
    l2_normalize: bool = True  # per-frame l2 normalization of the input
    batch_norm: bool = False  # batch norm on the (averaged) input before the classifier
    dropout: float = 0.0  # dropout on the classifier's input (training only)


@register_model("moe", MoEConfig)
class MoEClassifier(nn.Module):
    """The starter's MoeModel: per-class softmax gate over M logistic experts and a dummy."""

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.inputs = _input_layers(config)
        self.classifier = make_classifier("moe", config.input_size, config.num_classes, config.num_mixtures, config.init_prior)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        if self.config.l2_normalize:
            x = l2_normalize_frames(x)
        return self.classifier(self.inputs(masked_mean(x, lengths)))  # (B, K)


# ------------------------------------------------------------------------------------------------
# Frame-level models


@dataclass(frozen=True)
class DBoFConfig:
    num_classes: int = NUM_CLASSES  # K
    input_size: int = FEATURE_DIM  # D
    cluster_size: int = 8192  # width of the per-frame "clustering" projection
    hidden_size: int = 1024  # width of the video-level hidden layer
    iterations: int = 30  # frames sampled per video (with replacement, from the true frames)
    add_batch_norm: bool = True  # batch norm on input, cluster and hidden layers (else biases)
    pooling: str = "max"  # pooling over frames in cluster space: "max" or "average"
    classifier: str = "moe"  # video-level classifier: "moe" or "logistic"
    num_mixtures: int = 2  # MoE experts
    l2_normalize: bool = True  # per-frame l2 normalization of the input


@register_model("dbof", DBoFConfig)
class DBoFClassifier(nn.Module):
    """Deep Bag of Frames: sample frames, project each to a wide ReLU6 space, pool, classify."""

    def __init__(self, config: DBoFConfig) -> None:
        super().__init__()
        assert config.pooling in ("max", "average"), f"pooling must be 'max' or 'average', got {config.pooling!r}"
        self.config = config
        D, C, H = config.input_size, config.cluster_size, config.hidden_size
        bn = config.add_batch_norm
        self.input_bn = nn.BatchNorm1d(D) if bn else nn.Identity()
        self.cluster = Linear(D, C, bias=not bn)
        self.cluster_bn = nn.BatchNorm1d(C) if bn else nn.Identity()
        self.hidden = Linear(C, H, bias=not bn)
        self.hidden_bn = nn.BatchNorm1d(H) if bn else nn.Identity()
        self.classifier = make_classifier(config.classifier, H, config.num_classes, config.num_mixtures)
        nn.init.normal_(self.cluster.weight, std=D**-0.5)  # the starter's N(0, 1/sqrt(fan_in))
        nn.init.normal_(self.hidden.weight, std=C**-0.5)

    def _frame_indices(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N) indices of the frames to use, all inside each video's true length."""
        N = self.config.iterations
        L = lengths.clamp_min(1).to(torch.float32)[:, None]  # (B, 1)
        if self.training:
            u = torch.rand(len(lengths), N, device=lengths.device)
        else:
            u = ((torch.arange(N, device=lengths.device) + 0.5) / N)[None].expand(len(lengths), N)
        return (u * L).long().clamp_max(lengths.clamp_min(1)[:, None] - 1)  # (B, N)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        N, C = self.config.iterations, self.config.cluster_size
        if self.config.l2_normalize:
            x = l2_normalize_frames(x)
        idx = self._frame_indices(lengths.to(x.device))  # (B, N)
        frames = x.gather(1, idx[..., None].expand(B, N, D)).reshape(B * N, D)  # (B*N, D)
        a = F.relu6(self.cluster_bn(self.cluster(self.input_bn(frames))))  # (B*N, C)
        a = a.view(B, N, C)
        pooled = a.amax(dim=1) if self.config.pooling == "max" else a.mean(dim=1)  # (B, C)
        h = F.relu6(self.hidden_bn(self.hidden(pooled)))  # (B, H)
        return self.classifier(h)  # (B, K)


@dataclass(frozen=True)
class FrameLSTMConfig:
    num_classes: int = NUM_CLASSES  # K
    input_size: int = FEATURE_DIM  # D
    hidden_size: int = 1024  # LSTM cells per layer (starter: lstm_cells)
    num_layers: int = 2  # stacked LSTM layers (starter: lstm_layers)
    classifier: str = "moe"  # video-level classifier on the final state: "moe" or "logistic"
    num_mixtures: int = 2  # MoE experts
    l2_normalize: bool = True  # per-frame l2 normalization of the input


@register_model("frame_lstm", FrameLSTMConfig)
class FrameLSTMClassifier(nn.Module):
    """The starter's LstmModel: stacked LSTM over the true frames; the final state of every layer,
    (c, h) concatenated like TF's `state_is_tuple=False`, feeds the classifier."""

    def __init__(self, config: FrameLSTMConfig) -> None:
        super().__init__()
        self.config = config
        H, L = config.hidden_size, config.num_layers
        self.lstm = nn.LSTM(config.input_size, H, num_layers=L, batch_first=True)
        with torch.no_grad():  # TF BasicLSTMCell: zero biases plus forget_bias = 1.0
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias"):
                    p.zero_()
                    if name.startswith("bias_ih"):
                        p[H : 2 * H] = 1.0  # torch gate order: input, forget, cell, output
        self.classifier = make_classifier(config.classifier, 2 * L * H, config.num_classes, config.num_mixtures)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        if self.config.l2_normalize:
            x = l2_normalize_frames(x)
        packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        _, (h, c) = self.lstm(packed)  # each (L, B, H), in the batch's original order
        state = torch.stack([c, h], dim=1)  # (L, 2, B, H): per layer c then h
        state = state.permute(2, 0, 1, 3).reshape(B, -1)  # (B, L*2*H)
        return self.classifier(state)  # (B, K)
