"""Pieces shared by the YouTube-8M models (the baselines and the QRNN): the dataset's sizes, the
input conventions (per-frame l2 normalization, true-length masks and means) and the classifier heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.onednn import Linear

NUM_CLASSES = 3862  # YouTube-8M vocabulary (data/yt8m_vocabulary.csv)
FEATURE_DIM = 1152  # 1024 rgb (Inception + PCA) + 128 audio (VGGish + PCA) per frame or video


# ------------------------------------------------------------------------------------------------
# Shared input conventions


def l2_normalize_frames(x: torch.Tensor) -> torch.Tensor:
    """Per-frame l2 normalization of (B, T, D), like `tf.nn.l2_normalize` (eps 1e-12 on the square)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True).clamp_min(1e-12))


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True at the true steps of each sequence."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, D) over each sequence's first lengths[b] steps -> (B, D)."""
    B, T, D = x.shape
    mask = length_mask(lengths.to(x.device), T).to(x.dtype)  # (B, T)
    total = torch.einsum("btd,bt->bd", x, mask)
    return total / lengths.to(x.device, x.dtype).clamp_min(1)[:, None]


class MoE(nn.Module):
    """Mixture of logistic experts with a dummy expert; returns logit(p) per class (B, K)."""

    def __init__(self, in_features: int, num_classes: int, num_mixtures: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_mixtures = num_mixtures
        self.gates = Linear(in_features, num_classes * (num_mixtures + 1), bias=False)
        self.experts = Linear(in_features, num_classes * num_mixtures)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _ = x.shape
        K, M = self.num_classes, self.num_mixtures
        log_gate = F.log_softmax(self.gates(x).view(B, K, M + 1), dim=-1)  # (B, K, M+1); [..., M] is the dummy
        e = self.experts(x).view(B, K, M)  # (B, K, M) expert logits
        log_p = torch.logsumexp(log_gate[..., :M] + F.logsigmoid(e), dim=-1)  # log sum_m g_m sigma(e_m)
        log_not_p = torch.logsumexp(  # log(1 - p) = log(g_dummy + sum_m g_m sigma(-e_m))
            torch.cat([log_gate[..., M:], log_gate[..., :M] + F.logsigmoid(-e)], dim=-1), dim=-1
        )
        return log_p - log_not_p


class ContextGating(nn.Module):
    """Context gating (Miech, Laptev & Sivic 2017, arXiv:1706.06905): y = sigmoid(W x + b) * x, (B, D) -> (B, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


class OutputGating(nn.Module):
    """Context gating on the predicted probabilities (Miech, Laptev & Sivic 2017, the YouTube-8M 2017
    winner's label co-occurrence stage): p' = p * sigmoid(W p + b), (B, K) logits -> (B, K) logits.

    In log space, so no probability is rounded to 0 or 1: log p' = log p + log g and
    log(1 - p') = log((1 - p) + p (1 - g)). W starts at 0 and b at `init_gate` (g = 0.95 everywhere),
    an almost unchanged ranking that training then learns to reshape from the other classes' scores.
    """

    def __init__(self, num_classes: int, init_gate: float = 0.95) -> None:
        super().__init__()
        self.gate = Linear(num_classes, num_classes)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, math.log(init_gate / (1 - init_gate)))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        a = self.gate(torch.sigmoid(logits))  # (B, K) gate logits
        log_p = F.logsigmoid(logits) + F.logsigmoid(a)
        log_not_p = torch.logaddexp(F.logsigmoid(-logits), F.logsigmoid(logits) + F.logsigmoid(-a))
        return log_p - log_not_p


@torch.no_grad()
def set_class_priors(head: nn.Module, freq: torch.Tensor, floor: float) -> None:
    """Start class k of a fresh head at probability max(freq_k, floor), its frequency in the training
    labels, instead of one `init_prior` for all: a rare class's bias then needs no training to reach
    its level (with a BCE averaged over classes, Adam moves the rare classes' weights slowly).

    The logistic head's bias is logit(q); the MoE's gates start near uniform, so p ~ M/(M+1) *
    sigmoid(expert bias) and its expert biases are logit(q (M + 1) / M), capped at 1/2."""
    q = freq.detach().double().cpu().clamp(min=floor, max=1 - floor)
    if isinstance(head, MoE):
        m = head.num_mixtures
        q = (q * (m + 1) / m).clamp(max=0.5)
        head.experts.bias.copy_(torch.logit(q).repeat_interleave(m))  # (K * M,) laid out (K, M)
    else:
        head.bias.copy_(torch.logit(q))


def make_classifier(kind: str, in_features: int, num_classes: int, num_mixtures: int, init_prior: float = 0.0) -> nn.Module:
    """The video-level classifier on pooled features: "logistic" (one linear layer) or "moe".

    `init_prior > 0` starts every class at that probability instead of ~0.5 (MoE: ~1/3), so training
    does not spend its first epoch pushing 3,862 outputs down towards the rare positives.
    """
    assert kind in ("logistic", "moe"), f"classifier must be 'logistic' or 'moe', got {kind!r}"
    assert 0.0 <= init_prior < 1.0, "init_prior is a probability (0: default init)"
    head = Linear(in_features, num_classes) if kind == "logistic" else MoE(in_features, num_classes, num_mixtures)
    if init_prior > 0:  # the same prior for every class
        set_class_priors(head, torch.full((num_classes,), init_prior, dtype=torch.float64), floor=0.0)
    return head
