"""Every raw-pixel model at tiny size: output shape, finite logits, gradients reach every parameter,
padding beyond `lengths` does not change the logits, (B,T,H,W,3) and (B,T,D) inputs agree."""

import dataclasses

import pytest
import torch

from models import create_model, list_models, model_config_class

H, W = 4, 6  # tiny frames: 4 * 6 * 3 = 72 values
TINY_TT = dict(in_modes=(2, 4, 3, 3), hidden_modes=(2, 2, 2, 1), ranks=(1, 2, 3, 2, 1))
CASES = {
    "tt_gru": dict(TINY_TT, cell="keras"),
    "tt_gru/cudnn": dict(TINY_TT, cell="cudnn"),
    "tt_gru/separate": dict(TINY_TT, separate_gates=True),
    "tt_lstm": dict(TINY_TT),
    "tt_lstm/separate": dict(TINY_TT, separate_gates=True),
    "tt_mlp": dict(TINY_TT, num_frames=3),
    "gru": dict(input_size=72, hidden_size=8),
    "lstm": dict(input_size=72, hidden_size=8),
}
PIXEL_MODELS = {"tt_gru", "tt_lstm", "tt_mlp", "gru", "lstm"}


def _build(case: str, num_classes: int = 5):
    torch.manual_seed(0)
    return create_model(case.split("/")[0], num_classes=num_classes, **CASES[case])


def _clips(B=3, T=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (B, T, H, W, 3), dtype=torch.uint8, generator=g)
    return x, torch.tensor([7, 2, 5])[:B]


def test_pixel_models_are_registered_with_frozen_json_configs():
    assert PIXEL_MODELS <= set(list_models())
    for name in PIXEL_MODELS:
        cfg_cls = model_config_class(name)
        cfg = cfg_cls()
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.num_classes = 3
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            assert isinstance(v, (int, float, str, bool)) or (
                isinstance(v, tuple) and all(isinstance(i, int) for i in v)
            ), f"{name}.{f.name} = {v!r} is not JSON-able"


@pytest.mark.parametrize("case", CASES)
def test_shape_finite_and_gradients_reach_every_parameter(case):
    model = _build(case).train()
    x, lengths = _clips()
    logits = model(x, lengths)
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{case}: no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"{case}: zero gradient for {name}"
    assert x.dtype == torch.uint8  # the model did not change its input


@pytest.mark.parametrize("case", CASES)
def test_padding_does_not_change_logits(case):
    model = _build(case).eval()
    x, lengths = _clips()
    with torch.no_grad():
        ref = model(x, lengths)
        # overwrite the padded frames with noise and append more padded frames
        noisy = x.clone()
        for b, n in enumerate(lengths.tolist()):
            noisy[b, n:] = torch.randint(0, 256, noisy[b, n:].shape, dtype=torch.uint8)
        longer = torch.cat([noisy, torch.full((3, 4, H, W, 3), 200, dtype=torch.uint8)], dim=1)
        out = model(longer, lengths)
        flat = model(x.reshape(3, 7, H * W * 3), lengths)  # (B, T, D) input
        one = model(x[1:2, :2], lengths[1:2])  # the short clip alone, unpadded
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(flat, ref)
    torch.testing.assert_close(one, ref[1:2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["tt_gru", "tt_lstm", "tt_mlp"])
def test_wrong_frame_size_is_rejected(case):
    model = _build(case)
    with pytest.raises(AssertionError, match="expects 72"):
        model(torch.zeros(2, 3, 5, 5, 3, dtype=torch.uint8), torch.tensor([3, 3]))


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_round_trip_rebuilds_the_same_model(case, tmp_path):
    from app.checkpoint import load_checkpoint, save_checkpoint

    model = _build(case).eval()
    spec = {"kind": "pixels", "size": [W, H], "fps": 24.0}
    path = save_checkpoint(tmp_path / "m", model, class_names=list("abcde"), input_spec=spec)
    loaded = load_checkpoint(path)
    assert loaded.model.config == model.config and loaded.model_name == case.split("/")[0]
    x, lengths = _clips()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x, lengths), model(x, lengths), rtol=0, atol=0)
