"""Benchmark the TT input map and a TT-GRU training step against dense baselines, side by side in one
run (the machine may be shared: compare the printed RATIOS, not absolute times):

    python -m scripts.bench_tt
    PYTHONPATH=/tmp/bench_site python -m scripts.bench_tt   # with tensorly-torch installed there by
        # pip install --target /tmp/bench_site tensorly-torch tensorly   (not a project dependency)

1. Forward+backward of the fused TT-GRU input map 57,600 -> 768 (8x20x20x18 -> 12x4x4x4, ranks
   1,4,4,4,1) on 800 frames (batch 16 x 50): our TTLinear on uint8 pixels (normalized inside),
   a plain einsum chain over the whole batch, dense nn.Linear, tensorly-torch FactorizedLinear
   (blocktt; its default `factorized` implementation and `reconstructed`). The baselines get float
   pixels already normalized (their conversion is not timed).
   Pixels need no gradient, so backward computes weight gradients only, for every variant.
2. One training step (forward, cross-entropy, backward, Adam) of TT-GRU vs plain GRU on 16 clips x
   100 frames of 120x160x3 uint8.
3. The TT-GRU's recurrence in training, fused (`models.gru_recurrence`, one autograd Function) vs the
   per-step autograd loop (`fused_recurrence = False`): forward+backward of the recurrence alone on
   random gate inputs, and a whole training step, 16 clips of 50..100 frames (packed, shrinking batch)
   of 120x160x3 uint8, recurrent dropout on. `--sections 3` runs this one alone (a few seconds).
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


def _time(fns: dict[str, Callable[[], None]], reps: int) -> dict[str, tuple[float, float]]:
    """(min wall seconds, this process's CPU seconds / wall seconds in that run) of each fn over
    `reps` rounds, the variants interleaved within each round. cpu/wall near the thread count means
    the process had the cores; far below it, other jobs were competing."""
    best = {name: (float("inf"), 0.0) for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if wall < best[name][0]:
                best[name] = (wall, cpu / wall)
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
    results = _time(fns, reps)
    try:
        tltorch = importlib.import_module("tltorch")
    except ImportError:
        return [*results.items(), ("tensorly-torch FactorizedLinear blocktt", None)]
    for impl in ("factorized", "reconstructed"):  # factorized is tltorch's default
        tl = tltorch.FactorizedLinear(
            in_tensorized_features=IN_MODES,
            out_tensorized_features=OUT_MODES,
            factorization="blocktt",
            rank=RANKS,
            implementation=impl,
        )
        name = f"tensorly-torch blocktt ({impl})"
        results.update(_time({name: run(tl, lambda tl=tl: tl(xf))}, max(1, reps // 2)))
    return list(results.items())


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


def bench_recurrence(batch: int, frames: int, reps: int) -> dict[str, tuple[float, float]]:
    """Fused vs per-step recurrence of a UCF11 TT-GRU (256 units) in training: the recurrence alone
    (forward+backward on random gates, packed steps) and a whole training step."""
    torch.manual_seed(0)
    lengths = torch.linspace(frames, frames // 2, batch).round().long()  # sorted longest first
    x = torch.randint(0, 256, (batch, frames, 120, 160, 3), dtype=torch.uint8)
    y = torch.randint(0, 11, (batch,))
    model = create_model("tt_gru", num_classes=11).train()
    H = model.hidden_size
    sizes = (torch.arange(frames)[:, None] < lengths[None, :]).sum(1).tolist()
    gx = (torch.randn(sum(sizes), 3 * H) * 0.5).requires_grad_()
    mask = torch.ones(batch, H).bernoulli_(0.75) / 0.75
    grad = torch.randn(batch, H)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def recurrence(fused: bool) -> Callable[[], None]:
        def step() -> None:
            model.fused_recurrence = fused
            gx.grad = model.recurrent_weight.grad = None
            model._recurrence(gx, sizes, mask).backward(grad)

        return step

    def train_step(fused: bool) -> Callable[[], None]:
        def step() -> None:
            model.fused_recurrence = fused
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x, lengths), y).backward()
            opt.step()

        return step

    alone = {"recurrence alone, fused": recurrence(True), "recurrence alone, per-step autograd": recurrence(False)}
    steps = {"training step, fused": train_step(True), "training step, per-step autograd": train_step(False)}
    return _time(alone, 5 * reps) | _time(steps, reps)  # the recurrence alone is cheap: more rounds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="timed rounds per variant (min is reported)")
    ap.add_argument("--rows", type=int, default=800, help="frames through the input map (16 x 50)")
    ap.add_argument("--frames", type=int, default=100, help="frames per clip in the training step")
    ap.add_argument("--batch", type=int, default=16, help="clips per training step")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default, one per core)"
    )
    ap.add_argument("--sections", default="123", help="which parts to run, e.g. 3 (default: all)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    if "1" in args.sections:
        _print_input_map(args)
    if "2" in args.sections:
        _print_train_step(args)
    if "3" in args.sections:
        _print_recurrence(args)
    return 0


def _print_input_map(args: argparse.Namespace) -> None:
    print(f"\n1. Input map 57,600 -> 768 (TT-GRU fused gates), {args.rows} rows, forward+backward")
    res = bench_input_map(args.rows, args.reps)
    ours = res[0][1][0]
    print(f"{'variant':40s} {'seconds':>8s} {'cpu/wall':>8s} {'ours is x faster':>17s}")
    for name, r in res:
        if r is None:
            print(f"{name:40s} skipped (tltorch not importable)")
        else:
            print(f"{name:40s} {r[0]:8.3f} {r[1]:8.2f} {r[0] / ours:16.1f}x")


def _print_train_step(args: argparse.Namespace) -> None:
    print(f"\n2. Training step, {args.batch} clips x {args.frames} frames of 120x160x3 uint8 (Adam)")
    step = bench_train_step(args.batch, args.frames, max(1, args.reps - 1))
    print(f"{'model':40s} {'seconds':>8s} {'cpu/wall':>8s}")
    for name, (t, u) in step.items():
        print(f"{name:40s} {t:8.3f} {u:8.2f}")
    print(f"TT-GRU step is {step['gru'][0] / step['tt_gru'][0]:.1f}x faster than the plain GRU step")


def _print_recurrence(args: argparse.Namespace) -> None:
    lo = args.frames // 2
    print(f"\n3. TT-GRU recurrence in training, {args.batch} clips x {lo}..{args.frames} frames, fused vs per-step")
    res = bench_recurrence(args.batch, args.frames, args.reps)
    print(f"{'variant':40s} {'seconds':>8s} {'cpu/wall':>8s}")
    for name, (t, u) in res.items():
        print(f"{name:40s} {t:8.4f} {u:8.2f}")
    for what in ("recurrence alone", "training step"):
        ratio = res[f"{what}, per-step autograd"][0] / res[f"{what}, fused"][0]
        print(f"{what}: fused is {ratio:.1f}x faster than the per-step autograd loop")


if __name__ == "__main__":
    raise SystemExit(main())
