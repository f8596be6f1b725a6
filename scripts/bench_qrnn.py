"""QRNN speed on this CPU: a QRNN layer vs nn.LSTM, and our recurrence vs the plain loop.

    python -m scripts.bench_qrnn                 # the default sizes: T=300, D=1152, H=1024, B=64 and 8
    python -m scripts.bench_qrnn --repeats 5 --threads 2
    python -m scripts.bench_qrnn --allocator thp  # every contender on huge pages (THP_MEM_ALLOC_ENABLE=1)

Forward + backward (sum of outputs as the loss) of
1. one QRNN layer (fo-pooling, conv window 1 and 2; conv1d + the fused `QRNNPool`) vs one `nn.LSTM`
   layer with the same hidden size, and the same QRNN layer composed of plain ops
   (`forward_reference`: F.linear, autograd elementwise ops, the `unbind` loop) for reference,
2. the recurrence c_t = f_t c_{t-1} + u_t alone: `ForgetMult` (hand-written backward) vs the plain
   loop over `unbind(0)` differentiated by autograd, plus the largest gradient difference,
3. the pooling step (gate activations, recurrence, output gate: everything after the convolution):
   `QRNNPool` vs the same ops composed with the `unbind` loop.

The QRNN/LSTM ratio is printed beside its bound. On a CPU both layers are compute-bound, so the bound
is the ratio of their multiply-adds: an fo-QRNN layer (k=1) does 3DH per step and sample, an LSTM
4(D+H)H (2.52x at D=1152, H=1024). "QRNN k=1, GEMMs alone" times only the layer's matrix products
(the gates' forward, the input and weight gradients; no activations, no recurrence): no QRNN built on
torch's float32 products can be faster, so LSTM / that is the ceiling this CPU allows.
`--allocator thp` runs every contender with torch's allocator on transparent huge pages: glibc hands
each large tensor fresh pages, which the kernel faults in and zero-fills one 4 KB page at a time.

Runs alternate between the contenders and each reports its fastest repeat, so a busy machine slows
both alike; read the RATIOS. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from models.qrnn import QRNNLayer, QRNNPool, forget_mult, forget_mult_reference


def _fwd_bwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    return run


def _race(contenders: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in contenders}
    for fn in contenders.values():  # warm-up (allocator, thread pool)
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


class _Composed(nn.Module):
    """A QRNNLayer run through its plain-ops reference path."""

    def __init__(self, layer: QRNNLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer.forward_reference(x)


def _gemms_alone(layer: QRNNLayer, x: torch.Tensor) -> Callable[[], None]:
    """A QRNNLayer's matrix products alone: the gates (no bias) forward, then their gradient into x
    and W from a gradient made once beforehand (a sum's would be filled in every call)."""
    grad = torch.randn(x.shape[0], x.shape[1], layer.num_gates * layer.hidden_size)

    def run() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer.gates(x).backward(grad)

    return run


def flop_bound(D: int, H: int) -> float:
    """LSTM / fo-QRNN (k=1) multiply-adds per step and sample: 4(D+H)H / 3DH."""
    return 4 * (D + H) / (3 * D)


def bench_layers(T: int, B: int, D: int, H: int, repeats: int) -> list[str]:
    torch.manual_seed(0)
    x = torch.randn(T, B, D, requires_grad=True)
    qrnn = QRNNLayer(D, H, window=1, pooling="fo")
    contenders = {
        "QRNN k=1": _fwd_bwd(qrnn, x),
        "QRNN k=2": _fwd_bwd(QRNNLayer(D, H, window=2, pooling="fo"), x),
        "QRNN k=1, composed ops": _fwd_bwd(_Composed(QRNNLayer(D, H, window=1, pooling="fo")), x),
        "QRNN k=1, GEMMs alone": _gemms_alone(qrnn, x),
        "nn.LSTM": _fwd_bwd(nn.LSTM(D, H), x),
    }
    best = _race(contenders, repeats)
    lstm = best["nn.LSTM"]
    rows = [
        f"| layer fwd+bwd | T={T} B={B} D={D} H={H} | {name} | {t * 1e3:.0f} ms | {lstm / t:.2f}x |"
        for name, t in best.items()
    ]
    bound = flop_bound(D, H)
    ratio, ceiling = lstm / best["QRNN k=1"], lstm / best["QRNN k=1, GEMMs alone"]
    rows.append(f"| QRNN k=1 / LSTM vs the FLOP bound | B={B} | {ratio:.2f}x of {bound:.2f}x | "
                f"**{ratio / bound:.2f}** of the bound | GEMMs alone: {ceiling:.2f}x = {ceiling / bound:.2f} |")
    return rows


def bench_recurrence(T: int, B: int, H: int, repeats: int) -> list[str]:
    torch.manual_seed(0)
    f = torch.rand(T, B, H, requires_grad=True)
    u = torch.randn(T, B, H, requires_grad=True)
    g = torch.randn(T, B, H)

    def make(fn: Callable) -> Callable[[], None]:
        def run() -> None:
            f.grad = u.grad = None
            fn(f, u).backward(g)

        return run

    best = _race({"ForgetMult": make(forget_mult), "unbind loop": make(forget_mult_reference)}, repeats)
    grads = []
    for fn in (forget_mult, forget_mult_reference):
        grads.append(torch.autograd.grad(fn(f, u), (f, u), g))
    diff = max((a - b).abs().max().item() for a, b in zip(*grads))
    ref = best["unbind loop"]
    rows = [
        f"| recurrence fwd+bwd | T={T} B={B} H={H} | {name} | {t * 1e3:.0f} ms | {ref / t:.2f}x |"
        for name, t in best.items()
    ]
    rows.append(f"| recurrence gradients | T={T} B={B} H={H} | max abs diff vs loop | {diff:.1e} | |")

    gates = torch.randn(T, B, 3 * H, requires_grad=True)  # fo pooling: Z, F, O blocks
    c0 = torch.zeros(B, H)

    def composed(g: torch.Tensor) -> torch.Tensor:
        z, f, o = torch.tanh(g[..., :H]), torch.sigmoid(g[..., H : 2 * H]), torch.sigmoid(g[..., 2 * H :])
        return o * forget_mult_reference(f, (1 - f) * z, c0)

    def pool(fn: Callable) -> Callable[[], None]:
        def run() -> None:
            gates.grad = None
            fn(gates).backward(g)

        return run

    contenders = {"QRNNPool": pool(lambda a: QRNNPool.apply(a, c0, None, "fo")), "composed + unbind loop": pool(composed)}
    best = _race(contenders, repeats)
    diff = (
        torch.autograd.grad(QRNNPool.apply(gates, c0, None, "fo"), gates, g)[0]
        - torch.autograd.grad(composed(gates), gates, g)[0]
    ).abs().max().item()
    ref = best["composed + unbind loop"]
    rows += [f"| pooling fwd+bwd (fo) | T={T} B={B} H={H} | {name} | {t * 1e3:.0f} ms | {ref / t:.2f}x |"
             for name, t in best.items()]  # fmt: skip
    rows.append(f"| pooling gradients | T={T} B={B} H={H} | max abs diff vs composed | {diff:.1e} | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=300)
    p.add_argument("--D", type=int, default=1152)
    p.add_argument("--H", type=int, default=1024)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--allocator", choices=("glibc", "thp"), default="glibc",
                   help="glibc: malloc's fresh pages; thp: every contender on huge pages (THP_MEM_ALLOC_ENABLE)")
    args = p.parse_args(argv)
    want = "1" if args.allocator == "thp" else "0"
    if os.environ.get("THP_MEM_ALLOC_ENABLE", "0") != want:  # torch has read it already: run afresh with it
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": want}
        os.execve(sys.executable, [sys.executable, "-m", "scripts.bench_qrnn", *(sys.argv[1:] if argv is None else argv)], env)
    if args.threads:
        torch.set_num_threads(args.threads)
    thp = os.environ.get("THP_MEM_ALLOC_ENABLE", "0")  # torch's CPU allocator: huge pages for >= 2 MB
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats}, "
          f"THP_MEM_ALLOC_ENABLE={thp}")
    print("| what | size | contender | time | speedup vs LSTM / loop |")
    print("|---|---|---|---|---|")
    for B in args.batches:
        for row in bench_layers(args.T, B, args.D, args.H, args.repeats):
            print(row, flush=True)
    for B in args.batches:
        for row in bench_recurrence(args.T, B, args.H, args.repeats):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
