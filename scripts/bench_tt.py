"""Benchmark the TT input map and a TT-GRU training step against dense baselines, side by side in one
run (the machine may be shared: compare the printed RATIOS, not absolute times):

    python -m scripts.bench_tt
    PYTHONPATH=/tmp/bench_site python -m scripts.bench_tt   # with tensorly-torch installed there by
        # pip install --target /tmp/bench_site tensorly-torch tensorly   (not a project dependency)

1. Forward+backward of the fused TT-GRU input map 57,600 -> 768 (8x20x20x18 -> 12x4x4x4, ranks
   1,4,4,4,1) on 800 frames (batch 16 x 50): our TTLinear on uint8 pixels (normalized inside),
   a plain einsum chain over the whole batch, dense nn.Linear, tensorly-torch FactorizedLinear
   (blocktt). The baselines get float pixels already normalized (their conversion is not timed).
   Pixels need no gradient, so backward computes weight gradients only, for every variant.
2. One training step (forward, cross-entropy, backward, Adam) of TT-GRU vs plain GRU on 16 clips x
   100 frames of 120x160x3 uint8.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable

import torch
from torch import nn

from models import create_model
from models.tt import TTLinear

IN_MODES = (8, 20, 20, 18)
OUT_MODES = (12, 4, 4, 4)  # fused GRU gates: 3 x 4x4x4x4
RANKS = (1, 4, 4, 4, 1)


def _einsum_chain(x: torch.Tensor, cores: list[torch.Tensor]) -> torch.Tensor:
    """Reference TT map: one einsum per core over the whole batch, last mode first. x: (R, D) float."""
    R = x.shape[0]
    z = x.reshape(R, 8 * 20 * 20, 18, 1)  # (R, P, m4, r4)
    q = 1
    for k in range(3, -1, -1):
        g = cores[k]  # (s, m, n, r)
        z = z.reshape(-1, IN_MODES[k], q, RANKS[k + 1])  # (P, m, Q, r)
        z = torch.einsum("pmqr,smnr->pnqs", z, g)  # (P, n, Q, s)
        q *= OUT_MODES[k]
    return z.reshape(R, -1)  # (R, 768)


def _time(fns: dict[str, Callable[[], None]], reps: int) -> dict[str, float]:
    """Min wall time of each fn over `reps` rounds, the variants interleaved within each round."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def bench_input_map(rows: int, reps: int) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    x8 = torch.randint(0, 256, (rows, 57600), dtype=torch.uint8)
    xf = x8.float() / 255.0 - 0.5  # (rows, 57600): float input for the baselines
    grad = torch.randn(rows, 768)
    tt = TTLinear(in_modes=IN_MODES, out_modes=OUT_MODES, ranks=RANKS)
    dense = nn.Linear(57600, 768)

    def run(module: nn.Module, fwd: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            module.zero_grad(set_to_none=True)
            fwd().backward(grad)

        return step

    fns = {
        "TTLinear (ours, uint8 in, chunked)": run(tt, lambda: tt(x8, in_scale=1 / 255, in_shift=-0.5)),
        "TT plain einsum chain, whole batch": run(tt, lambda: _einsum_chain(xf, list(tt.cores)) + tt.bias),
        "dense nn.Linear": run(dense, lambda: dense(xf)),
    }
    try:
        tltorch = importlib.import_module("tltorch")
    except ImportError:
        tltorch = None
    results = _time(fns, reps)
    if tltorch is not None:
        tl = tltorch.FactorizedLinear(
            in_tensorized_features=IN_MODES,
            out_tensorized_features=OUT_MODES,
            factorization="blocktt",
            rank=RANKS,
        )
        results.update(
            _time({"tensorly-torch FactorizedLinear blocktt": run(tl, lambda: tl(xf))}, max(1, reps // 2))
        )
    return list(results.items()) + (
        [] if tltorch else [("tensorly-torch FactorizedLinear blocktt", float("nan"))]
    )


def bench_train_step(batch: int, frames: int, reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (batch, frames, 120, 160, 3), dtype=torch.uint8)
    lengths = torch.full((batch,), frames)
    y = torch.randint(0, 11, (batch,))
    fns = {}
    for name in ("tt_gru", "gru"):
        model = create_model(name, num_classes=11)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x, lengths), y)
            loss.backward()
            opt.step()

        fns[name] = step
    return _time(fns, reps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="timed rounds per variant (min is reported)")
    ap.add_argument("--rows", type=int, default=800, help="frames through the input map (16 x 50)")
    ap.add_argument("--frames", type=int, default=100, help="frames per clip in the training step")
    ap.add_argument("--batch", type=int, default=16, help="clips per training step")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    print(f"\n1. Input map 57,600 -> 768 (TT-GRU fused gates), {args.rows} rows, forward+backward")
    res = bench_input_map(args.rows, args.reps)
    ours = res[0][1]
    print(f"{'variant':40s} {'seconds':>9s} {'ours is x faster':>17s}")
    for name, t in res:
        if t != t:  # NaN: not installed
            print(f"{name:40s} {'skipped (tltorch not importable)':>27s}")
        else:
            print(f"{name:40s} {t:9.3f} {t / ours:16.1f}x")

    print(f"\n2. Training step, {args.batch} clips x {args.frames} frames of 120x160x3 uint8 (Adam)")
    step = bench_train_step(args.batch, args.frames, max(1, args.reps - 1))
    print(f"{'model':40s} {'seconds':>9s}")
    for name, t in step.items():
        print(f"{name:40s} {t:9.3f}")
    print(f"TT-GRU step is {step['gru'] / step['tt_gru']:.1f}x faster than the plain GRU step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
