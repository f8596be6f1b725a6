"""TTLinear against the plain formula `tt_linear_reference` and its own dense matrix, TT-SVD, gradcheck,
initialization, parameter counts."""

import math

import pytest
import torch

import models.tt as tt_module
from models.tt import TTLinear, _default_merge, tt_linear, tt_linear_reference

SHAPES = [  # (in_modes, out_modes, ranks)
    ((5,), (7,), (1, 1)),
    ((2, 3, 4), (3, 2, 2), (1, 2, 3, 1)),
    ((3, 4, 2, 5), (2, 3, 2, 2), (1, 3, 4, 2, 1)),
    ((2, 2, 3, 2, 3), (2, 1, 3, 1, 2), (1, 2, 2, 3, 2, 1)),
]


def _random_layer(in_modes, out_modes, ranks, merge=None, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    layer = TTLinear(in_modes=in_modes, out_modes=out_modes, ranks=ranks, merge=merge).to(dtype)
    with torch.no_grad():
        for core in layer.cores:
            core.normal_()  # unit-scale cores make mistakes visible
        layer.bias.normal_()
    return layer


# --- the fast path against the formula ------------------------------------------------------------

REFERENCE_SHAPES = [  # (in_modes, out_modes, ranks): one mode, rank 1, output modes 1, large ranks
    ((5,), (7,), (1, 1)),
    ((6, 4), (1, 5), (1, 1, 1)),
    ((4, 3, 2), (2, 2, 3), (1, 1, 1, 1)),
    ((2, 3, 4), (3, 2, 2), (1, 2, 3, 1)),
    ((3, 2, 2), (2, 3, 1), (1, 6, 5, 1)),
    ((3, 4, 2, 5), (2, 3, 2, 2), (1, 3, 4, 2, 1)),
    ((2, 2, 3, 2, 3), (2, 1, 3, 1, 2), (1, 2, 2, 3, 2, 1)),
]
INPUTS = [  # (input dtype, leading dims, in_scale, in_shift, with a mask, with a bias)
    (torch.float64, (2, 5), 1.0, 0.0, False, True),
    (torch.float64, (2, 5), 0.7, -0.3, True, False),
    (torch.float64, (10,), 0.7, 0.0, True, True),  # masked without a shift: no added term
    (torch.float64, (2, 5), 0.7, -0.3, False, True),  # affine map folded into the output
    (torch.float64, (), 1.3, 0.4, True, True),  # one 1-D input row
    (torch.uint8, (2, 5), 1 / 255, -0.5, True, True),
    (torch.uint8, (5, 2), 1 / 255, -0.5, False, False),
]


def _assert_same(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("first_stage", ["chunks", "one chunk", "export"])
@pytest.mark.parametrize("in_modes,out_modes,ranks", REFERENCE_SHAPES)
def test_fast_path_equals_reference_float64(monkeypatch, in_modes, out_modes, ranks, first_stage):
    """tt_linear and its gradients w.r.t. x, cores and bias equal tt_linear_reference to 1e-10 for every
    split (merge), every first stage (the chunked autograd.Function with several chunks or one, and the
    plain tensor ops taken while a graph is captured), float and uint8 inputs, masks and affine maps."""
    D = math.prod(in_modes)
    if first_stage == "chunks":  # 3 rows per chunk: 10 rows are 4 chunks, the last one short
        monkeypatch.setattr("models.tt._CHUNK_ELEMENTS", 3 * D)
    monkeypatch.setattr("models.tt.capturing_graph", lambda: first_stage == "export")
    torch.manual_seed(len(in_modes))
    cores = [
        torch.randn(ranks[k], in_modes[k], out_modes[k], ranks[k + 1], dtype=torch.float64)
        for k in range(len(in_modes))
    ]
    bias = torch.randn(math.prod(out_modes), dtype=torch.float64)
    mask = torch.rand(3, D, dtype=torch.float64)
    for dtype, lead, in_scale, in_shift, masked, biased in INPUTS:
        R = math.prod(lead)
        if dtype == torch.uint8:
            x = torch.randint(0, 256, (*lead, D), dtype=torch.uint8)
        else:
            x = torch.randn(*lead, D, dtype=torch.float64, requires_grad=True)
        kw = dict(in_scale=in_scale, in_shift=in_shift)
        if masked:  # runs of 2 rows per mask row cross the chunk borders; mask rows come back
            kw.update(in_mask=mask, in_mask_index=(torch.arange(R) // 2) % 3)
        for merge in [None, *range(1, len(in_modes) + 1)]:
            cs = [c.clone().requires_grad_() for c in cores]
            b = bias.clone().requires_grad_() if biased else None
            leaves = [t for t in (x, *cs, b) if t is not None and t.requires_grad]
            y_ref = tt_linear_reference(x, cs, b, **kw)
            assert y_ref.shape == (*lead, math.prod(out_modes))
            g = torch.randn_like(y_ref)  # a generic upstream gradient
            grads_ref = torch.autograd.grad((y_ref * g).sum(), leaves)
            y = tt_linear(x, cs, b, merge=merge, **kw)
            assert y.shape == y_ref.shape and y.dtype == torch.float64
            _assert_same(y, y_ref)
            for got, want in zip(torch.autograd.grad((y * g).sum(), leaves), grads_ref, strict=True):
                _assert_same(got, want)


def test_inference_two_steps_only_where_they_pay():
    """UCF11's TT-GRU map takes the two-step path without autograd; the 32x24 demo model's (batched
    matmuls too small to pay) and any map with autograd on keep the merged GEMM."""
    ucf11 = TTLinear(in_modes=(8, 20, 20, 18), out_modes=(12, 4, 4, 4), ranks=(1, 4, 4, 4, 1))
    demo = TTLinear(in_modes=(4, 6, 8, 12), out_modes=(12, 4, 4, 2), ranks=(1, 4, 4, 4, 1))
    x = torch.zeros(1, 1)
    assert not tt_module._two_steps_pay(x, list(ucf11.cores), 2, None)  # autograd on
    with torch.no_grad():
        assert tt_module._two_steps_pay(x, list(ucf11.cores), 2, None)
        assert not tt_module._two_steps_pay(x, list(demo.cores), 2, None)
        assert not tt_module._two_steps_pay(x, list(ucf11.cores), 2, torch.ones(1, ucf11.in_features))  # dropout
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not tt_module._two_steps_pay(x, list(ucf11.cores), 2, None)


TWO_STEP_SHAPES = [  # (in_modes, out_modes, ranks): the inference path's cases, each pays (asserted)
    ((6, 8), (4, 3), (1, 2, 1)),  # two modes: no leading stage
    ((3, 10, 9), (2, 3, 2), (1, 3, 2, 1)),
    ((2, 3, 10, 9), (3, 2, 4, 3), (1, 2, 3, 2, 1)),
    ((8, 20, 20, 18), (12, 4, 4, 4), (1, 4, 4, 4, 1)),  # UCF11's TT-GRU
]


@pytest.mark.parametrize("chunk", ["rows", "one chunk"])
@pytest.mark.parametrize("in_modes,out_modes,ranks", TWO_STEP_SHAPES)
def test_inference_two_steps_equal_reference(monkeypatch, in_modes, out_modes, ranks, chunk):
    """Without autograd the CPU path contracts the last two modes one at a time
    (`_tt_linear_two_steps`): equal to the formula for uint8 and float inputs, affine maps with and
    without a shift, 1-D and batched inputs, several chunks (the last one short) or one; with
    autograd on, or under autocast, the same call takes the merged GEMM instead."""
    if chunk == "rows":
        monkeypatch.setattr("models.tt._STEP_ELEMENTS", 1)  # one row per chunk
    if in_modes != (8, 20, 20, 18):  # small shapes: below the size where the path pays in time
        monkeypatch.setattr("models.tt._MIN_STEP_MACS", 1)
    torch.manual_seed(len(in_modes))
    D, N = math.prod(in_modes), math.prod(out_modes)
    cores = [torch.randn(ranks[k], in_modes[k], out_modes[k], ranks[k + 1], dtype=torch.float64)
             for k in range(len(in_modes))]  # fmt: skip
    bias = torch.randn(N, dtype=torch.float64)
    assert tt_module._two_steps_pay(torch.zeros(1, D), cores, len(in_modes) - 2, None) is False  # grad on
    with torch.no_grad():
        assert tt_module._two_steps_pay(torch.zeros(1, D), cores, len(in_modes) - 2, None)
        assert not tt_module._two_steps_pay(torch.zeros(1, D), cores, len(in_modes) - 1, None)
        for x, in_scale, in_shift, b in [
            (torch.randint(0, 256, (3, 5, D), dtype=torch.uint8), 1 / 255, -0.5, bias),
            (torch.randn(7, D, dtype=torch.float64), 0.7, 0.0, None),
            (torch.randn(D, dtype=torch.float64), 1.3, 0.4, bias),
        ]:
            kw = dict(in_scale=in_scale, in_shift=in_shift)
            y = tt_linear(x, cores, b, merge=2, **kw)
            assert y.shape == (*x.shape[:-1], N) and y.dtype == torch.float64
            _assert_same(y, tt_linear_reference(x, cores, b, **kw))


@pytest.mark.parametrize("in_modes,out_modes,ranks", REFERENCE_SHAPES)
def test_layer_forward_and_dense_weight_equal_reference(in_modes, out_modes, ranks):
    """TTLinear.forward (its default split) and dense_weight (the reference applied to the identity,
    transposed) against the formula."""
    layer = _random_layer(in_modes, out_modes, ranks, dtype=torch.float64)
    cores = list(layer.cores)
    D = math.prod(in_modes)
    with torch.no_grad():
        x = torch.randn(3, 4, D, dtype=torch.float64)
        _assert_same(layer(x), tt_linear_reference(x, cores, layer.bias))
        eye = torch.eye(D, dtype=torch.float64)
        _assert_same(layer.dense_weight(), tt_linear_reference(eye, cores).t())


def test_reference_on_a_hand_computed_two_core_matrix():
    """The reference itself, on a case worked by hand: with rank 1 the matrix is a Kronecker product,
    W = kron(G_1[0, :, :, 0].T, G_2[0, :, :, 0].T), with the first mode most significant."""
    torch.manual_seed(0)
    g1 = torch.randn(1, 2, 3, 1, dtype=torch.float64)
    g2 = torch.randn(1, 4, 2, 1, dtype=torch.float64)
    W = torch.kron(g1[0, :, :, 0].t(), g2[0, :, :, 0].t())  # (3 * 2, 2 * 4)
    x = torch.randn(5, 8, dtype=torch.float64)
    _assert_same(tt_linear_reference(x, [g1, g2]), x @ W.T)


@pytest.mark.parametrize("in_modes,out_modes,ranks", SHAPES)
def test_forward_equals_dense_matrix_for_every_split_and_input_rank(in_modes, out_modes, ranks):
    D = math.prod(in_modes)
    for merge in range(1, len(in_modes) + 1):
        layer = _random_layer(in_modes, out_modes, ranks, merge=merge)
        W = layer.dense_weight().double()  # (N, D)
        assert W.shape == (math.prod(out_modes), D)
        for lead in [(), (5,), (2, 3), (2, 1, 3)]:  # 1-D to 4-D inputs
            x = torch.randn(*lead, D)
            y = layer(x)
            ref = x.double() @ W.T + layer.bias.double()
            assert y.shape == (*lead, W.shape[0])
            torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_uint8_input_with_normalization_and_mask_equals_float_reference():
    layer = _random_layer((4, 3, 6), (2, 3, 2), (1, 3, 2, 1), dtype=torch.float64)
    x8 = torch.randint(0, 256, (2, 5, 72), dtype=torch.uint8)
    mask = torch.rand(2, 72, dtype=torch.float64)  # one row per clip
    index = torch.arange(2).repeat_interleave(5)  # row -> clip
    W = layer.dense_weight()
    xf = x8.double() / 255 - 0.5
    y_plain = layer(x8, in_scale=1 / 255, in_shift=-0.5)
    torch.testing.assert_close(y_plain, xf @ W.T + layer.bias)
    y_mask = layer(x8, in_scale=1 / 255, in_shift=-0.5, in_mask=mask, in_mask_index=index)
    torch.testing.assert_close(y_mask, (xf * mask[:, None, :]) @ W.T + layer.bias)


def test_chunked_first_contraction_matches_unchunked(monkeypatch):
    layer = _random_layer((4, 5, 6), (2, 2, 3), (1, 3, 3, 1), dtype=torch.float64)
    x = torch.randint(0, 256, (37, 120), dtype=torch.uint8)
    mask = torch.rand(37, 120, dtype=torch.float64)
    idx = torch.arange(37)
    ref = layer(x, in_scale=0.1, in_shift=-3.0, in_mask=mask, in_mask_index=idx)
    ref.sum().backward()
    ref_grads = [c.grad.clone() for c in layer.cores]
    layer.zero_grad()
    monkeypatch.setattr("models.tt._CHUNK_ELEMENTS", 7 * 120)  # 6 chunks, the last one short
    for m in (mask, None):
        y = layer(x, in_scale=0.1, in_shift=-3.0, in_mask=m, in_mask_index=idx if m is not None else None)
        if m is not None:
            torch.testing.assert_close(y, ref)
            y.sum().backward()
            for c, g in zip(layer.cores, ref_grads):
                torch.testing.assert_close(c.grad, g)
        else:
            W = layer.dense_weight()
            torch.testing.assert_close(y, (x.double() * 0.1 - 3.0) @ W.T + layer.bias)


@pytest.mark.parametrize("merge", [1, 2, 3])
def test_export_path_equals_chunked_path_float32(monkeypatch, merge):
    """The plain tensor-op first stage taken while a graph is captured gives the chunked
    autograd.Function's outputs and gradients, with and without an input mask."""
    layer = _random_layer((4, 5, 6), (2, 2, 3), (1, 3, 3, 1), merge=merge)
    x = torch.randint(0, 256, (37, 120), dtype=torch.uint8)
    mask = torch.rand(4, 120)
    idx = torch.arange(37) % 4  # row -> mask row
    kw = dict(in_scale=1 / 255, in_shift=-0.5)
    monkeypatch.setattr("models.tt._CHUNK_ELEMENTS", 7 * 120)  # several chunks on the fast path
    results = []
    for capturing in (False, True):
        monkeypatch.setattr("models.tt.capturing_graph", lambda c=capturing: c)
        layer.zero_grad()
        y = layer(x, **kw)
        y_mask = layer(x, in_mask=mask, in_mask_index=idx, **kw)
        (y.square().sum() + y_mask.square().sum()).backward()
        results.append((y.detach(), y_mask.detach(), [c.grad.clone() for c in layer.cores]))
    (fast, fast_mask, fast_grads), (plain, plain_mask, plain_grads) = results
    torch.testing.assert_close(plain, fast, rtol=1e-5, atol=1e-5 * fast.abs().max().item())
    torch.testing.assert_close(plain_mask, fast_mask, rtol=1e-5, atol=1e-5 * fast_mask.abs().max().item())
    for g_plain, g_fast in zip(plain_grads, fast_grads):
        torch.testing.assert_close(g_plain, g_fast, rtol=1e-4, atol=1e-4 * g_fast.abs().max().item())


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shape asserts frozen into the trace
def test_traced_layer_replays_on_another_batch_size():
    layer = _random_layer((4, 5, 6), (2, 2, 3), (1, 3, 3, 1)).requires_grad_(False)

    def f(x):
        return layer(x, in_scale=1 / 255, in_shift=-0.5)
    with torch.no_grad():
        traced = torch.jit.trace(f, torch.randint(0, 256, (3, 120), dtype=torch.uint8))
        x = torch.randint(0, 256, (11, 120), dtype=torch.uint8)
        torch.testing.assert_close(traced(x), f(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("merge", [1, 2, 3])
def test_gradcheck_float64(merge):
    torch.manual_seed(0)
    cores = [
        torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for shape in [(1, 2, 2, 2), (2, 3, 2, 3), (3, 2, 3, 1)]
    ]
    bias = torch.randn(12, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 12, dtype=torch.float64)
    index = torch.tensor([0, 1, 1, 0])  # row -> mask row

    def with_mask(x, b, *cs):
        return tt_linear(x, cs, b, merge=merge, in_scale=0.7, in_shift=0.2, in_mask=mask, in_mask_index=index)

    def folded(x, b, *cs):  # without a mask the affine map is folded into the output
        return tt_linear(x, cs, b, merge=merge, in_scale=0.7, in_shift=0.2)

    assert torch.autograd.gradcheck(with_mask, (x, bias, *cores))
    assert torch.autograd.gradcheck(folded, (x, bias, *cores))


@pytest.mark.parametrize("in_modes,out_modes,ranks", SHAPES[1:])
def test_from_dense_recovers_an_exact_tt_matrix(in_modes, out_modes, ranks):
    src = _random_layer(in_modes, out_modes, ranks, dtype=torch.float64)
    W = src.dense_weight().detach()
    tt = TTLinear.from_dense(W, in_modes=in_modes, out_modes=out_modes, ranks=ranks)
    assert tt.approximation_error < 1e-10
    torch.testing.assert_close(tt.dense_weight().double(), W, rtol=1e-5, atol=1e-5)
    bigger = tuple(1 if i in (0, len(ranks) - 1) else r + 2 for i, r in enumerate(ranks))
    padded = TTLinear.from_dense(W, in_modes=in_modes, out_modes=out_modes, ranks=bigger)
    assert padded.ranks == bigger and padded.approximation_error < 1e-10


def test_from_dense_error_shrinks_with_rank():
    torch.manual_seed(0)
    W = torch.randn(16, 24, dtype=torch.float64)  # a generic matrix has no low TT rank
    errs = [
        TTLinear.from_dense(W, in_modes=(4, 6), out_modes=(4, 4), ranks=(1, r, 1)).approximation_error
        for r in (1, 4, 16)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[0] > 0.3 and errs[2] < 1e-10  # rank 16 is full here


@pytest.mark.parametrize("init", ["glorot", "he"])
def test_init_gives_the_target_std_of_the_dense_matrix(init):
    ratios = []
    for seed in range(12):
        torch.manual_seed(seed)
        layer = TTLinear(in_modes=(6, 8, 10), out_modes=(4, 4, 4), ranks=(1, 8, 8, 1), init=init)
        ratios.append(layer.dense_weight().std().item() / layer.target_std())
    want = math.sqrt(2 / 480) if init == "he" else math.sqrt(2 / (480 + 64))
    assert layer.target_std() == pytest.approx(want)
    assert 0.9 < sum(ratios) / len(ratios) < 1.1, ratios
    assert all(0.6 < r < 1.5 for r in ratios), ratios
    assert layer.core_std() ** 6 * 64 == pytest.approx(want**2)  # Var(W) = prod(inner ranks) s^(2d)


def test_init_std_on_the_ucf11_fused_gru_shape():
    torch.manual_seed(0)
    layer = TTLinear(in_modes=(8, 20, 20, 18), out_modes=(12, 4, 4, 4), ranks=(1, 4, 4, 4, 1))
    assert 0.75 < layer.dense_weight().std().item() / layer.target_std() < 1.3


def test_num_params_compression_and_default_merge():
    layer = TTLinear(in_modes=(8, 20, 20, 18), out_modes=(4, 4, 4, 4), ranks=(1, 4, 4, 4, 1))
    assert layer.num_params(include_bias=False) == 2976  # the paper's TTL, rank 4
    assert layer.num_params() == 2976 + 256
    assert layer.compression_rate() == pytest.approx(57600 * 256 / 2976)
    assert "2,976 core params" in layer.compression_summary()
    assert layer.merge == 2  # K = 20 * 18 = 360 for the first GEMM
    assert _default_merge((10, 18, 13, 30)) == 2 and _default_merge((2, 3)) == 2
    assert TTLinear(in_modes=(3, 4), out_modes=(2, 2), ranks=(1, 2, 1), bias=False).bias is None


def test_bad_shapes_are_rejected():
    with pytest.raises(AssertionError, match="ranks"):
        TTLinear(in_modes=(2, 3), out_modes=(2, 2), ranks=(1, 2, 2, 1))
    layer = TTLinear(in_modes=(2, 3), out_modes=(2, 2), ranks=(1, 2, 1))
    with pytest.raises(AssertionError, match="prod"):
        layer(torch.randn(4, 7))


def _all_factorizations(n: int, d: int) -> list[tuple[int, ...]]:
    """Every ascending d-tuple of positive integers with product n (plain enumeration, the oracle)."""
    if d == 1:
        return [(n,)]
    out = []
    for f in range(1, n + 1):
        if n % f == 0:
            out += [(f, *rest) for rest in _all_factorizations(n // f, d - 1) if rest[0] >= f]
    return out


def test_balanced_modes_is_the_most_even_factorization():
    """Against brute force: among factorizations with no 1 (when one exists), the smallest largest
    factor, then the largest smallest factor."""
    from models.tt import balanced_modes

    for n in [*range(1, 400), 2304, 4608, 57600, 70200, 160 * 120 * 3, 128, 256, 1000]:
        for d in (2, 3, 4):
            got = balanced_modes(n, d)
            assert math.prod(got) == n and len(got) == d and list(got) == sorted(got)
            cands = _all_factorizations(n, d)
            no_ones = [c for c in cands if c[0] >= 2]
            pool = no_ones or cands
            assert got in pool, (n, d, got)
            if no_ones:
                best = min(pool, key=lambda c: (c[-1], -c[0]))
                assert (got[-1], -got[0]) == (best[-1], -best[0]), (n, d, got, best)
            else:  # fewer than d prime factors: the 1s are unavoidable, the rest are the primes
                assert got.count(1) == max(0, d - sum(1 for c in got if c > 1))
    assert balanced_modes(57600) == (15, 15, 16, 16) and balanced_modes(128) == (2, 4, 4, 4)
