"""models.onednn.linear_rows (float32 products through oneDNN, forward and backward) against float64
F.linear, and the QRNN layer that runs on it against its composed reference in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.onednn as onednn
from models.onednn import linear_rows, onednn_linear_available
from models.qrnn import QRNNLayer, _tanh_

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="torch built without oneDNN")


def _grads(fn, *tensors):
    """Output and input gradients of fn(*tensors) for a fixed random output gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out.dtype)
    out.backward(g)
    return [out.detach().double(), *(t.grad.double() for t in leaves)], out.grad_fn


@needs_onednn
@pytest.mark.parametrize("rows,chunk", [(10, 3), (7, 1024), (1, 4)])
def test_linear_rows_matches_float64_linear(rows, chunk, monkeypatch):
    """Output, dx, dw and db, with the weight gradient summed over chunks of 3 rows (the last one
    short), of one chunk, and of a single row."""
    monkeypatch.setattr(onednn, "ROWS_PER_CHUNK", chunk)
    torch.manual_seed(0)
    x, w, b = torch.randn(rows, 13), torch.randn(6, 13), torch.randn(6)
    got, grad_fn = _grads(linear_rows, x, w, b)
    assert type(grad_fn).__name__ == "_LinearRowsBackward"  # the oneDNN path ran
    want, _ = _grads(F.linear, x.double(), w.double(), b.double())
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_linear_rows_takes_a_strided_input_and_no_bias():
    torch.manual_seed(1)
    x = torch.randn(13, 9).t()  # (9, 13), not contiguous
    w = torch.randn(5, 13)
    got, _ = _grads(linear_rows, x, w)
    want, _ = _grads(F.linear, x.double(), w.double())
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_linear_rows_falls_back_to_f_linear():
    """float64 and autocast go through F.linear (oneDNN's product here is float32 only)."""
    x, w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True), torch.randn(2, 3, dtype=torch.float64)
    assert type(linear_rows(x, w).grad_fn).__name__ != "_LinearRowsBackward"
    torch.testing.assert_close(linear_rows(x, w), F.linear(x, w), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_rows(x.float(), w.float())
    assert out.dtype == torch.bfloat16


@needs_onednn
@pytest.mark.parametrize("pooling,window,T", [("fo", 1, 9), ("ifo", 2, 9), ("f", 3, 9), ("fo", 2, 1)])
def test_float32_layer_matches_the_float64_reference(pooling, window, T):
    """The layer's float32 path (oneDNN products, the tanh through a sigmoid, the pool's in-place
    backward) against the composed layer in float64: outputs and every gradient."""
    torch.manual_seed(3)
    layer = QRNNLayer(6, 5, window=window, pooling=pooling)
    ref = QRNNLayer(6, 5, window=window, pooling=pooling).double()
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(T, 4, 6)
    x32, x64 = x.clone().requires_grad_(), x.double().requires_grad_()
    y32, y64 = layer(x32), ref.forward_reference(x64)
    assert type(layer.gates(x32).grad_fn).__name__ == "ViewBackward0"
    assert type(layer.gates(x32).grad_fn.next_functions[0][0]).__name__ == "_LinearRowsBackward"
    g = torch.randn(y64.shape, dtype=torch.float64)
    y32.backward(g.float())
    y64.backward(g)
    got = [y32.detach(), x32.grad, layer.conv.weight.grad, layer.conv.bias.grad]
    want = [y64.detach(), x64.grad, ref.conv.weight.grad, ref.conv.bias.grad]
    for a, e in zip(got, want):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=2e-6)


def test_tanh_through_the_sigmoid_equals_tanh():
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor([0.0, 1e-30, -1e-8, 3e-4])])
    torch.testing.assert_close(_tanh_(x.clone()), torch.tanh(x), rtol=0, atol=3e-7)
    x64 = x.double()
    torch.testing.assert_close(_tanh_(x64.clone()), torch.tanh(x64), rtol=0, atol=1e-15)


@needs_onednn
def test_linear_module_is_nn_linear_through_onednn():
    """Same parameters and state dict as nn.Linear (checkpoints load either way), same outputs, any
    leading shape."""
    torch.manual_seed(4)
    fast, plain = onednn.Linear(7, 3), torch.nn.Linear(7, 3)
    plain.load_state_dict(fast.state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 5, 7)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-6)
    assert fast(x).shape == (2, 5, 3)
    assert type(fast(x[0]).grad_fn).__name__ == "ViewBackward0"
    assert type(fast(x[0]).grad_fn.next_functions[0][0]).__name__ == "_LinearRowsBackward"
