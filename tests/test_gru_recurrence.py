"""The fused Keras GRU recurrence (models/gru_recurrence.py): float64 gradcheck of the Function on
tiny sizes, and the TT-GRU with it equal to the TT-GRU with the per-step autograd loop."""

import pytest
import torch

from models import create_model
from models.gru_recurrence import gru_recurrence, gru_recurrence_reference

TINY = dict(in_modes=(2, 4, 3, 3), hidden_modes=(2, 2, 2, 1), ranks=(1, 2, 3, 2, 1), num_classes=4)
SIZES = [(4, 4, 3, 1, 1), (2, 2, 2), (5,), (3, 1, 1, 1)]  # rows per step: shrinking, constant, one step


def _weights(H, B, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    U_zr = torch.randn(H, 2 * H, dtype=dtype, generator=g).requires_grad_()
    U_h = torch.randn(H, H, dtype=dtype, generator=g).requires_grad_()
    mask = (torch.rand(B, H, generator=g, dtype=dtype) > 0.3).to(dtype) / 0.7
    return g, U_zr, U_h, mask


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_of_the_fused_gru_recurrence(sizes, masked):
    H = 3
    g, U_zr, U_h, mask = _weights(H, sizes[0], seed=len(sizes))
    gx = torch.randn(sum(sizes), 3 * H, dtype=torch.float64, generator=g, requires_grad=True)
    m = mask if masked else None
    assert torch.autograd.gradcheck(lambda gx, a, b: gru_recurrence(gx, sizes, a, b, m), (gx, U_zr, U_h))


@pytest.mark.parametrize("masked", [False, True])
def test_fused_gru_recurrence_equals_the_per_step_autograd_loop(masked):
    """Same final states and gradients as the plain loop, with weights that are column slices of one
    (H, 3H) matrix (as the model passes them) and a gradient on only some of the inputs."""
    H, sizes = 4, (5, 5, 4, 2, 2, 1)
    g, _, _, mask = _weights(H, 5, seed=7)
    U = torch.randn(H, 3 * H, dtype=torch.float64, generator=g, requires_grad=True)
    gx = torch.randn(sum(sizes), 3 * H, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(5, H, dtype=torch.float64, generator=g)
    out = {}
    for name, fn in (("fused", gru_recurrence), ("reference", gru_recurrence_reference)):
        gx.grad = U.grad = None
        h = fn(gx, sizes, U[:, : 2 * H], U[:, 2 * H :], mask if masked else None)
        (h * w).sum().backward()
        out[name] = (h.detach(), gx.grad, U.grad)
    for a, b in zip(out["fused"], out["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # without gradients it is a plain forward
        U_zr, U_h = U[:, : 2 * H], U[:, 2 * H :]
        torch.testing.assert_close(gru_recurrence(gx, sizes, U_zr, U_h), gru_recurrence_reference(gx, sizes, U_zr, U_h))
    # only the weights need a gradient: gx gets none
    U.grad = None
    gru_recurrence(gx.detach(), sizes, U[:, : 2 * H], U[:, 2 * H :]).sum().backward()
    assert U.grad is not None


def _uses_fused(out: torch.Tensor) -> bool:
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if "GRURecurrence" in type(fn).__name__:
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False


@pytest.mark.parametrize("lengths", [[3, 6, 1, 6, 2], [5, 5, 5, 5, 5]], ids=["packed", "all_frames"])
@pytest.mark.parametrize("separate", [False, True])
def test_tt_gru_training_with_the_fused_recurrence_equals_the_per_step_loop(lengths, separate):
    """float32, dropout on (the same seed, so the same masks): logits and the gradients of all
    parameters equal with the fused Function and with `_run_steps`, on clips of different lengths
    (the packed, shrinking batch) and of one length (all frames, time-major)."""
    torch.manual_seed(0)
    model = create_model("tt_gru", **TINY, separate_gates=separate, dropout=0.3, recurrent_dropout=0.4).train()
    with torch.no_grad():
        for p in model.parameters():  # non-zero biases, larger recurrent weights
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randint(0, 256, (5, 6, 72), dtype=torch.uint8)
    lengths = torch.tensor(lengths)
    w = torch.linspace(-1, 2, 4)
    out = {}
    for fused in (True, False):
        model.fused_recurrence = fused
        model.zero_grad()
        torch.manual_seed(3)
        logits = model(x, lengths)
        assert _uses_fused(logits) == fused
        (logits * w).sum().backward()
        out[fused] = (logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters()})
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-6)
    assert out[True][1].keys() == {k for k, _ in model.named_parameters()}
    for k, g in out[True][1].items():
        torch.testing.assert_close(g, out[False][1][k], rtol=1e-5, atol=1e-6, msg=k)
        assert g.abs().sum() > 0, k


def test_the_fused_recurrence_is_used_only_for_the_keras_cell_in_training():
    x, lengths = torch.randint(0, 256, (3, 4, 72), dtype=torch.uint8), torch.tensor([4, 2, 3])
    keras = create_model("tt_gru", **TINY).train()
    assert _uses_fused(keras(x, lengths))
    for model in (create_model("tt_gru", cell="cudnn", **TINY), create_model("tt_lstm", **TINY)):
        assert not _uses_fused(model.train()(x, lengths))
    with torch.no_grad():
        assert keras(x, lengths).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the per-step loop, state float32
        assert not _uses_fused(keras(x, lengths))
