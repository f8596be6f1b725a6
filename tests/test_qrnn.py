"""QRNN: the fast recurrence against the plain loop, gradcheck, layer semantics, padding."""

from __future__ import annotations

import pytest
import torch

from models import create_model, qrnn
from models.common import OutputGating
from models.qrnn import (
    QRNN,
    ForgetMult,
    QRNNLayer,
    QRNNPool,
    forget_mult,
    forget_mult_reference,
    reverse_padded,
)


def test_forget_mult_matches_reference_loop():
    torch.manual_seed(0)
    T, B, H = 50, 4, 16
    f = torch.rand(T, B, H, requires_grad=True)
    u = torch.randn(T, B, H, requires_grad=True)
    c0 = torch.randn(B, H, requires_grad=True)
    g = torch.randn(T, B, H)
    fast = forget_mult(f, u, c0)
    grads_fast = torch.autograd.grad(fast, (f, u, c0), g)
    ref = forget_mult_reference(f, u, c0)
    grads_ref = torch.autograd.grad(ref, (f, u, c0), g)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert grads_fast[0].abs().sum() > 0  # gradients are not trivially zero


def test_forget_mult_gradcheck_float64():
    torch.manual_seed(1)
    f = torch.rand(6, 2, 3, dtype=torch.float64, requires_grad=True)
    u = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ForgetMult.apply, (f, u, c0))


def _layer_reference(layer: QRNNLayer, x: torch.Tensor) -> torch.Tensor:
    """The paper's equations written out with an explicit causal conv and a Python loop."""
    T, B, D = x.shape
    H, k = layer.hidden_size, layer.window
    W = layer.conv.weight.view(-1, k, D)  # (G*H, k, D), window oldest first
    gates = []
    for t in range(T):
        acc = layer.conv.bias.expand(B, -1).clone()
        for j in range(k):
            src = t - (k - 1) + j
            if src >= 0:
                acc = acc + x[src] @ W[:, j].t()
        gates.append(acc)
    g = torch.stack(gates)  # (T, B, G*H)
    z, f = torch.tanh(g[..., :H]), torch.sigmoid(g[..., H : 2 * H])
    c = torch.zeros(B, H)
    out = []
    for t in range(T):
        if layer.pooling == "ifo":
            c = f[t] * c + torch.sigmoid(g[t, :, 3 * H :]) * z[t]
        else:
            c = f[t] * c + (1 - f[t]) * z[t]
        out.append(c if layer.pooling == "f" else torch.sigmoid(g[t, :, 2 * H : 3 * H]) * c)
    return torch.stack(out)


@pytest.mark.parametrize("pooling,window", [("f", 1), ("fo", 2), ("ifo", 3)])
def test_layer_matches_equations(pooling, window):
    torch.manual_seed(2)
    layer = QRNNLayer(5, 4, window=window, pooling=pooling)
    x = torch.randn(7, 3, 5)
    torch.testing.assert_close(layer(x), _layer_reference(layer, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "pooling,window,zoneout,T",
    [("f", 1, 0.0, 7), ("fo", 2, 0.0, 7), ("ifo", 3, 0.3, 7), ("fo", 1, 0.4, 7), ("fo", 1, 0.0, 1), ("fo", 3, 0.0, 1)],
)
def test_fused_layer_matches_the_composed_reference(pooling, window, zoneout, T):
    """conv1d + QRNNPool against the same layer written as plain autograd ops: outputs and every gradient
    (T = 1, video level, takes another conv1d path)."""
    torch.manual_seed(8)
    layer = QRNNLayer(5, 4, window=window, pooling=pooling, zoneout=zoneout).double().eval()
    x = torch.randn(T, 3, 5, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y, y_ref = layer(x, c0), layer.forward_reference(x, c0)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    g = torch.randn_like(y)
    inputs = (x, c0, layer.conv.weight, layer.conv.bias)
    for a, b in zip(torch.autograd.grad(y, inputs, g), torch.autograd.grad(y_ref, inputs, g)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("pooling", ["f", "fo", "ifo"])
@pytest.mark.parametrize("chunk_steps", [1, 4, 6])
def test_qrnn_pool_gradcheck_with_a_zoneout_mask(pooling, chunk_steps, monkeypatch):
    """Chunks of 1 step, of 4 (the last chunk shorter) and one chunk for all 6 steps; with a bias."""
    torch.manual_seed(9)
    G = len(pooling) + 1
    monkeypatch.setattr(qrnn, "CHUNK_BYTES", chunk_steps * 2 * G * 3 * 8)  # B=2, H=3, float64
    assert qrnn._chunks(torch.empty(6, 2, G * 3, dtype=torch.float64))[0] == (0, chunk_steps)
    gates = torch.randn(6, 2, G * 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(G * 3, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(6, 2, 3) > 0.3).double()
    assert torch.autograd.gradcheck(lambda a, b, c: QRNNPool.apply(a, b, mask, pooling, c), (gates, c0, bias))


@pytest.mark.parametrize("pooling,window,zoneout", [("f", 1, 0.0), ("fo", 1, 0.3), ("ifo", 2, 0.0), ("fo", 1, 0.0)])
def test_layer_in_chunks_overwrites_only_its_own_gates(pooling, window, zoneout, monkeypatch):
    """The layer's path (gates overwritten by their activations, then by their gradients) in chunks
    of 2 steps of 7 equals the composed reference; a second backward through it is refused."""
    torch.manual_seed(10)
    layer = QRNNLayer(5, 4, window=window, pooling=pooling, zoneout=zoneout).double().eval()
    monkeypatch.setattr(qrnn, "CHUNK_BYTES", 2 * 3 * layer.num_gates * 4 * 8)
    x = torch.randn(7, 3, 5, dtype=torch.float64, requires_grad=True)
    y, y_ref = layer(x), layer.forward_reference(x)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    g = torch.randn_like(y)
    inputs = (x, layer.conv.weight, layer.conv.bias)
    for a, b in zip(torch.autograd.grad(y, inputs, g, retain_graph=True), torch.autograd.grad(y_ref, inputs, g)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(y, inputs, g)


def test_zoneout_keeps_state_in_training_and_scales_in_eval():
    torch.manual_seed(3)
    layer = QRNNLayer(4, 6, pooling="f", zoneout=1.0 - 1e-6)
    x = torch.randn(5, 2, 4)
    layer.train()
    assert layer(x).abs().max() == 0  # every unit zoned out: the zero state is kept
    layer.zoneout = 0.5
    layer.eval()
    plain = QRNNLayer(4, 6, pooling="f")
    plain.load_state_dict(layer.state_dict())
    y_zone, y_plain = layer(x), plain(x)
    assert not torch.allclose(y_zone, y_plain)
    torch.testing.assert_close(y_zone[0], 0.5 * y_plain[0])  # first step: (1-f) z scaled by 1-p


def test_reverse_padded_is_an_involution_within_lengths():
    x = torch.arange(12.0).view(4, 3, 1)  # (T, B, 1)
    lengths = torch.tensor([4, 2, 1])
    r = reverse_padded(x, lengths)
    assert r[:, 0, 0].tolist() == [9.0, 6.0, 3.0, 0.0]
    assert r[:, 1, 0].tolist() == [4.0, 1.0, 7.0, 10.0]  # reversed first 2, padding untouched
    torch.testing.assert_close(reverse_padded(r, lengths), x)


@pytest.mark.parametrize("bidirectional,dense", [(False, False), (True, False), (True, True)])
def test_stack_ignores_padding(bidirectional, dense):
    torch.manual_seed(4)
    qrnn = QRNN(6, 5, num_layers=2, window=2, bidirectional=bidirectional, dense=dense).eval()
    lengths = torch.tensor([7, 3, 5])
    x = torch.randn(3, 7, 6)
    noisy = x.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = 100 * torch.randn(7 - n, 6)
    y, y_noisy = qrnn(x, lengths), qrnn(noisy, lengths)
    torch.testing.assert_close(y, y_noisy)
    # Each sequence alone, unpadded, gives the same outputs as in the padded batch.
    for b, n in enumerate(lengths.tolist()):
        alone = qrnn(x[b : b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(alone[0], y[b, :n], atol=1e-6, rtol=1e-5)
    assert y[1, 3:].abs().max() == 0  # outputs beyond the length are zero


@pytest.mark.parametrize("pool,dense", [("mean", False), ("last", False), ("last", True)])
def test_classifier_pools_true_steps(pool, dense):
    torch.manual_seed(5)
    model = create_model(
        "qrnn", num_classes=7, input_size=10, hidden_size=8, num_layers=2, pool=pool, bidirectional=True, dense=dense
    )
    model.eval()
    x = torch.randn(2, 6, 10)
    lengths = torch.tensor([6, 2])
    logits = model(x, lengths)
    alone = model(x[1:, :2], torch.tensor([2]))
    torch.testing.assert_close(logits[1:], alone, atol=1e-6, rtol=1e-5)
    assert logits.shape == (2, 7)


def test_video_level_input_is_a_gated_mlp():
    torch.manual_seed(6)
    model = create_model("qrnn", num_classes=3, input_size=4, hidden_size=5, num_layers=1, window=1).eval()
    x = torch.randn(2, 1, 4)
    layer = model.qrnn.layers[0][0]
    xn = x[:, 0] / x[:, 0].norm(dim=-1, keepdim=True) * 2.0  # unit norm times sqrt(D = 4)
    g = layer.conv(xn)
    z, f, o = torch.tanh(g[:, :5]), torch.sigmoid(g[:, 5:10]), torch.sigmoid(g[:, 10:])
    want = model.classifier(o * (1 - f) * z)
    torch.testing.assert_close(model(x, torch.tensor([1, 1])), want)


def test_dense_stack_concatenates_input_and_every_layer():
    torch.manual_seed(7)
    qrnn = QRNN(4, 3, num_layers=2, dense=True).eval()
    x = torch.randn(2, 5, 4)
    out = qrnn(x)
    assert out.shape == (2, 5, 4 + 2 * 3) and qrnn.out_size == 10
    torch.testing.assert_close(out[..., :4], x)
    h1 = qrnn.layers[0][0](x.transpose(0, 1))
    torch.testing.assert_close(out[..., 4:7], h1.transpose(0, 1))
    h2 = qrnn.layers[1][0](torch.cat([x.transpose(0, 1), h1], dim=-1))
    torch.testing.assert_close(out[..., 7:], h2.transpose(0, 1))


def test_batch_norm_and_context_gating_on_the_pooled_vector():
    """batch_norm then context gating (Miech et al. 2017: h * sigmoid(W h + b)) between pooling and
    the classifier; padding still never leaks."""
    torch.manual_seed(8)
    model = create_model("qrnn", num_classes=3, input_size=4, hidden_size=5, num_layers=1, window=1, dense=True,
                         batch_norm=True, context_gating=True)  # fmt: skip
    model.train()
    model(torch.randn(16, 1, 4), torch.ones(16, dtype=torch.long))  # move the running statistics
    model.eval()
    x = torch.randn(2, 1, 4)
    pooled = model.qrnn(x / x.norm(dim=-1, keepdim=True) * 2.0)[:, 0]  # (B, 4 + 5)
    bn = model.norm
    h = (pooled - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    h = h * torch.sigmoid(model.gating.gate(h))
    torch.testing.assert_close(model(x, torch.tensor([1, 1])), model.classifier(h))
    seq = create_model("qrnn", num_classes=3, input_size=4, hidden_size=5, num_layers=2, batch_norm=True,
                       context_gating=True).eval()  # fmt: skip
    xs, lengths = torch.randn(2, 6, 4), torch.tensor([6, 2])
    torch.testing.assert_close(seq(xs, lengths)[1:], seq(xs[1:, :2], torch.tensor([2])), atol=1e-6, rtol=1e-5)


def test_output_gating_scales_each_probability_by_its_gate():
    """logit(p * sigmoid(W p + b)) written out with probabilities in float64, against the layer's log
    space form; at its init (W = 0) the gate is 0.95 everywhere; no infinities at extreme logits."""
    torch.manual_seed(12)
    gating = OutputGating(5).double()
    logits = torch.randn(3, 5, dtype=torch.float64) * 3
    p = torch.sigmoid(logits)
    torch.testing.assert_close(torch.sigmoid(gating(logits)), 0.95 * p)
    with torch.no_grad():
        gating.gate.weight.normal_()
    p_gated = p * torch.sigmoid(p @ gating.gate.weight.t() + gating.gate.bias)
    torch.testing.assert_close(gating(logits), torch.log(p_gated / (1 - p_gated)), atol=1e-10, rtol=1e-10)
    assert torch.isfinite(gating(torch.tensor([[-80.0, 40.0, 0.0, 1.0, -1.0]], dtype=torch.float64))).all()
    model = create_model("qrnn", num_classes=5, input_size=4, hidden_size=3, num_layers=1, window=1,
                         classifier="moe", output_gating=True).eval()  # fmt: skip
    x = torch.randn(2, 1, 4)
    head = model.classifier(model.qrnn(x / x.norm(dim=-1, keepdim=True) * 2.0)[:, 0])
    torch.testing.assert_close(model(x, torch.tensor([1, 1])), model.output_gating(head))


def test_bench_reads_its_ratio_against_the_multiply_add_bound():
    """bench_qrnn's bound is LSTM / QRNN multiply-adds, counted here per gate and product; its table
    row divides the measured LSTM / QRNN time ratio by it."""
    from scripts import bench_qrnn

    D, H = 1152, 1024
    qrnn_macs = 3 * D * H  # Z, F, O gates from the input (k = 1)
    lstm_macs = 4 * D * H + 4 * H * H  # four gates from the input and from the previous state
    assert bench_qrnn.flop_bound(D, H) == pytest.approx(lstm_macs / qrnn_macs)
    assert bench_qrnn.flop_bound(D, H) == pytest.approx(2.52, abs=0.005)  # the figure
    rows = bench_qrnn.bench_layers(T=6, B=2, D=8, H=4, repeats=1)
    times = {r.split(" | ")[2]: float(r.split(" | ")[3].split()[0]) for r in rows if r.startswith("| layer")}
    assert set(times) >= {"QRNN k=1", "QRNN k=1, GEMMs alone", "nn.LSTM"}
    bound_row = rows[-1]
    ratio, bound = (float(v.rstrip("x")) for v in bound_row.split(" | ")[2].split(" of "))
    assert bound == pytest.approx(bench_qrnn.flop_bound(8, 4), abs=0.005)
    assert float(bound_row.split("**")[1]) == pytest.approx(ratio / bound, abs=0.01)
