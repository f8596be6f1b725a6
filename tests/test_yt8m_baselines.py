"""YouTube-8M feature models at tiny size: shapes, finite logits, gradients, padding invariance."""

from __future__ import annotations

import pytest
import torch

from models import create_model
from models.common import MoE, l2_normalize_frames, make_classifier, masked_mean, set_class_priors

K, D = 11, 12
TINY = {
    "logistic": {},
    "moe": {"num_mixtures": 2},
    "moe_bn": {"num_mixtures": 4, "batch_norm": True, "dropout": 0.3},
    "logistic_bn": {"batch_norm": True, "dropout": 0.3},
    "frame_logistic": {},
    "dbof": {"cluster_size": 16, "hidden_size": 8, "iterations": 5},
    "frame_lstm": {"hidden_size": 6, "num_layers": 2},
    "qrnn": {"hidden_size": 8, "num_layers": 2, "window": 2, "bidirectional": True, "zoneout": 0.1, "dropout": 0.1},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_feature_model_tiny(name):
    torch.manual_seed(0)
    model = create_model(name.removesuffix("_bn"), num_classes=K, input_size=D, **TINY[name])
    lengths = torch.tensor([5, 2, 1])
    x = torch.randn(3, 5, D)
    model.train()
    logits = model(x, lengths)
    assert logits.shape == (3, K) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # Padding invariance (eval mode): garbage beyond the lengths, or no padding at all, same logits.
    model.eval()
    with torch.no_grad():
        ref = model(x, lengths)
        noisy = x.clone()
        noisy[1, 2:] = 50.0
        noisy[2, 1:] = -50.0
        torch.testing.assert_close(model(noisy, lengths), ref)
        alone = model(x[1:2, :2], lengths[1:2])
        torch.testing.assert_close(alone, ref[1:2], atol=1e-5, rtol=1e-5)
    # Video-level input (T = 1) works too.
    with torch.no_grad():
        assert model(torch.randn(4, 1, D), torch.ones(4, dtype=torch.long)).shape == (4, K)


def test_moe_logits_are_logit_of_the_starter_mixture():
    torch.manual_seed(1)
    moe = MoE(D, K, num_mixtures=3)
    x = torch.randn(4, D)
    gate = torch.softmax(moe.gates(x).view(4, K, 4), dim=-1)
    expert = torch.sigmoid(moe.experts(x).view(4, K, 3))
    p = (gate[..., :3] * expert).sum(-1)
    torch.testing.assert_close(torch.sigmoid(moe(x)), p, atol=1e-6, rtol=1e-5)
    with torch.no_grad():  # saturated experts and gates stay finite in log space
        moe.experts.weight.mul_(1e4)
        moe.gates.weight.mul_(1e4)
    assert torch.isfinite(moe(x)).all()


@pytest.mark.parametrize("kind,mixtures", [("logistic", 1), ("moe", 2), ("moe", 3)])
def test_class_priors_start_each_class_at_its_frequency(kind, mixtures):
    """Oracle: the head's own forward with its matrices zeroed (uniform gates), against
    max(freq, floor); an MoE caps its experts at 1/2, so a class can start at most at M / (2 (M + 1))."""
    head = make_classifier(kind, D, 5, mixtures, init_prior=0.001)
    freq = torch.tensor([0.2, 0.01, 0.0, 0.45, 1e-4])
    set_class_priors(head, freq, floor=1e-3)
    want = freq.clamp(min=1e-3)
    if kind == "moe":
        want = want.clamp(max=0.5 * mixtures / (mixtures + 1))
    torch.testing.assert_close(_start_probs(head), want.expand(3, 5), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind,mixtures", [("logistic", 1), ("moe", 2), ("moe", 3)])
def test_init_prior_starts_every_class_there(kind, mixtures):
    """Oracle as above: with uniform gates every class starts at init_prior (the MoE's dummy expert
    included in the share)."""
    head = make_classifier(kind, D, 5, mixtures, init_prior=0.01)
    torch.testing.assert_close(_start_probs(head), torch.full((3, 5), 0.01), rtol=1e-5, atol=1e-7)


def _start_probs(head: torch.nn.Module) -> torch.Tensor:
    """(3, K) probabilities of the head with its matrices zeroed: its biases alone (uniform gates)."""
    with torch.no_grad():
        for name, w in head.named_parameters():
            if name.endswith("weight"):
                w.zero_()
    return torch.sigmoid(head(torch.randn(3, D)))


def test_l2_normalize_and_masked_mean():
    x = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    torch.testing.assert_close(l2_normalize_frames(x), torch.tensor([[[0.6, 0.8], [0.0, 0.0]]]))
    torch.testing.assert_close(masked_mean(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([2])), torch.tensor([[2.0]]))


def test_frame_lstm_uses_final_state_of_true_frames():
    torch.manual_seed(2)
    model = create_model("frame_lstm", num_classes=K, input_size=D, hidden_size=4, num_layers=2, classifier="logistic").eval()
    x = torch.randn(1, 6, D)
    with torch.no_grad():
        _, (h, c) = model.lstm(l2_normalize_frames(x[:, :4]))
        state = torch.cat([c[0], h[0], c[1], h[1]], dim=-1)  # TF MultiRNNCell(state_is_tuple=False) order
        torch.testing.assert_close(model(x, torch.tensor([4])), model.classifier(state))


def test_ensemble_averages_member_probabilities(tmp_path):
    from app.checkpoint import save_checkpoint
    from app.ensemble import ensemble_predict, load_ensemble
    from data.batch import Batch

    spec = {"kind": "features", "dims": D, "level": "video"}
    names = [f"c{i}" for i in range(K)]
    models = []
    for i, name in enumerate(("logistic", "qrnn")):
        torch.manual_seed(i)
        m = create_model(name, num_classes=K, input_size=D, **TINY[name]).eval()
        save_checkpoint(tmp_path / f"m{i}", m, class_names=names, input_spec=spec, multi_label=True)
        models.append(m)
    members = load_ensemble([tmp_path / "m0", tmp_path / "m1"])
    x, lengths = torch.randn(3, 1, D), torch.ones(3, dtype=torch.long)
    ids, probs = ensemble_predict(members, [Batch(x, lengths, torch.zeros(3, K), ["a", "b", "c"])])
    with torch.no_grad():
        want = (torch.sigmoid(models[0](x, lengths)) + torch.sigmoid(models[1](x, lengths))) / 2
    assert ids == ["a", "b", "c"]
    torch.testing.assert_close(torch.from_numpy(probs), want)
    save_checkpoint(tmp_path / "other", models[0], class_names=names[::-1], input_spec=spec, multi_label=True)
    with pytest.raises(Exception, match="class names differ"):
        load_ensemble([tmp_path / "m0", tmp_path / "other"])


@pytest.mark.parametrize("name", ["logistic", "moe"])
def test_batch_norm_and_dropout_act_on_the_averaged_input(name):
    torch.manual_seed(3)
    model = create_model(name, num_classes=K, input_size=D, batch_norm=True, dropout=0.5)
    model.train()
    model(torch.randn(16, 1, D), torch.ones(16, dtype=torch.long))  # move the running statistics
    model.eval()
    x, lengths = torch.randn(2, 3, D), torch.tensor([3, 1])
    v = masked_mean(l2_normalize_frames(x), lengths)
    bn = model.inputs[0]
    want = model.classifier((v - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(model(x, lengths), want)  # no dropout in evaluation
    assert list(create_model(name, num_classes=K, input_size=D).inputs.state_dict()) == []  # old checkpoints load
