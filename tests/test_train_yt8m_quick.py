"""The tuning script's training options (scripts/train_yt8m_quick.py): nested subsets for learning
curves, soft targets (label smoothing, distillation) and AdamW's decoupled decay, each against the
arithmetic it promises, and one run of the script over real TFRecord shards with all of them on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import create_model
from scripts.train_yt8m_quick import l2_normalize, main, make_optimizer, mix_targets, subset_indices


def test_subsets_are_nested_sorted_and_unique():
    small, large = subset_indices(100, 10), subset_indices(100, 40)
    assert len(small) == 10 and len(large) == 40
    assert set(small) <= set(large)
    assert np.all(np.diff(large) > 0)  # file order, no repeats


def test_l2_normalize_scales_rgb_and_audio_apart():
    x = np.random.default_rng(0).normal(size=(4, 1152)).astype(np.float32) * [[1.0], [3.0], [0.1], [7.0]]
    z = l2_normalize(x)
    np.testing.assert_allclose(np.linalg.norm(z[:, :1024], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(z[:, 1024:], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(z[:, :1024] * np.linalg.norm(x[:, :1024], axis=1, keepdims=True), x[:, :1024], rtol=1e-5)


def test_label_smoothing_keeps_each_class_frequency():
    """Oracle: mean over videos of (1 - e) y + e * mean(y) is mean(y); a positive becomes 1 - e + e * prior."""
    y = (torch.rand(500, 7, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    prior = y.mean(0)
    soft = mix_targets(y, prior, 0.1)
    torch.testing.assert_close(soft.mean(0), prior)
    rows, cols = torch.nonzero(y, as_tuple=True)
    torch.testing.assert_close(soft[rows, cols], 0.9 + 0.1 * prior[cols])
    assert mix_targets(y, prior, 0.0) is y


def test_weight_decay_shrinks_the_matrices_and_leaves_the_biases():
    """Oracle: with zero gradients an AdamW step multiplies a decayed weight by (1 - lr * wd) exactly;
    the biases (which hold the class prior) are not decayed."""
    model = create_model("logistic", num_classes=5)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = make_optimizer(model, lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        want = before[name] * (1 - 0.1 * 0.5) if p.dim() > 1 else before[name]
        torch.testing.assert_close(p.detach(), want, msg=name)
    assert isinstance(make_optimizer(model, lr=0.1, weight_decay=0.0), torch.optim.Adam)


@pytest.fixture
def shards(tmp_path):
    from data.yt8m import write_yt8m

    rng = np.random.default_rng(0)
    for k in range(3):
        videos = [{"id": f"s{k}v{i:02d}", "labels": sorted(set(rng.integers(0, 6, size=2).tolist())),
                   "rgb": rng.normal(size=1024).astype(np.float32), "audio": rng.normal(size=128).astype(np.float32)}
                  for i in range(12)]
        write_yt8m(tmp_path / f"train{k}.tfrecord", videos, level="video")
    return tmp_path


def test_script_runs_a_teacher_then_a_student_on_a_subset(shards, capsys):
    """Real shards, real checkpoint: the teacher is saved and reloaded, the student trains on 10 of
    the 24 training videos with soft targets and decay, and both score the 12 held-out videos."""
    common = ["--train", str(shards / "train*.tfrecord"), "--val-shards", "1", "--epochs", "1", "--batch-size", "4"]
    assert main([*common, "--out", str(shards / "teacher")]) == 0
    assert main([*common, "--subset", "10", "--teacher", str(shards / "teacher"), str(shards / "teacher"), "--distill", "0.5",
                 "--label-smoothing", "0.1", "--weight-decay", "0.01", "--class-priors", "--l2-normalize"]) == 0
    out = capsys.readouterr().out
    assert "targets: 0.5 x labels + 0.5 x" in out
    finals = [json.loads(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("final ")]
    assert [f["num_videos"] for f in finals] == [12, 12]
    assert out.count("loaded 24 train / 12 eval videos") == 2 and "training on 10 of them" in out
