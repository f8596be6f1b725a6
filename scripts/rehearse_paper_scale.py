"""The README pipeline on a paper dataset's stand-in (`scripts/make_paper_scale.py`; UCF11 unless
--dataset says otherwise), each step measured: the figures of docs/BENCHMARKS.md, "Paper-scale rehearsal".

    python -m scripts.make_paper_scale --dataset ucf11 --scale 1.0 --out /data/ps/ucf11 --workers 2
    python -m scripts.rehearse_paper_scale --root /data/ps/ucf11 --cache /data/ps/cache --out /data/ps/runs

Steps, one after the other (never two at once: the machine's cores are shared):
1. the floor: PyAV decoding every frame of every stand-in file, one thread, no conversion (bench_decode's
   floor); then `python -m app preprocess` (skipped with --no-preprocess), timed, with its CPU
   seconds. Per core = clips per CPU second, so the floor's one thread and preprocess's workers
   compare on equal terms.
2. `python -m app train --config app/configs/<dataset>_<model>.toml` (UCF11: fold 0 of the group
   split; Celebrities: fold 0; Hollywood2: its official split) for each --models entry, with its epoch time, data share and test accuracy from the run folder.
3. the recurrence's share of a TT-GRU training step, on --sample-steps steps of the epoch's own plan:
   each whole step (`app.train.train_step` on its micro-batches), then the recurrence alone
   (`models.gru_recurrence`, forward and backward) on the same step sizes, both timed here.
Every command runs in its own session with its process tree's peak PSS sampled once a second.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from scripts.bench_decode import floor
from scripts.bench_long_video import ROOT, run_measured

PY = sys.executable


def timed_floor(paths: list[str], threads: str) -> dict:
    """`scripts.bench_decode.floor` on `paths` ("1": one thread; "AUTO": FFmpeg's own threading, as
    bench_decode runs it), with its wall and CPU seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    frames = floor(paths, threads)
    return {"frames": frames, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def measured(cmd: list[str], log_dir: Path) -> dict:
    """`cmd` run with its tree's peak PSS sampled (1 s) and its CPU seconds (it and its reaped workers)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    before = os.times()
    run = run_measured(cmd, 0, log_dir, interval=1.0)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return {"seconds": run.seconds, "cpu_seconds": cpu, "peak_pss_gib": (run.peak or 0) / 2**30}


SPLIT = {  # train arguments and the run's folder below its experiment folder, per dataset
    "ucf11": (['--data.split="group"', "--fold", "0"], "fold0"),
    "celebrities": (["--fold", "0"], "fold0"),
    "hollywood2": ([], ""),
}


def config(dataset: str, model: str = "tt_gru", overrides: tuple[str, ...] = ()) -> Any:
    from app.config import load_config

    return load_config(f"app/configs/{dataset}_{model}.toml", overrides)


def preprocess_step(dataset: str, root: Path, cache: Path, out: Path, workers: int) -> dict:
    files = sorted(str(p) for p in root.rglob("*") if p.suffix in (".mpg", ".avi") and p.is_file())
    one, auto = timed_floor(files, "1"), timed_floor(files, "AUTO")
    shutil.rmtree(cache, ignore_errors=True)
    data = config(dataset).data
    cmd = [PY, "-m", "app", "preprocess", "--dataset", dataset, "--root", str(root), "--cache", str(cache),
           "--fps", f"{data.fps:g}", "--size", f"{data.size[0]}x{data.size[1]}", "--workers", str(workers)]  # fmt: skip
    r = measured(cmd, out / "logs" / "preprocess")
    cache_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    n, cores = len(files), os.cpu_count() or 1
    return {
        **r, "clips": n, "source_frames": one["frames"], "cache_gb": cache_bytes / 1e9, "floor_1": one,
        "floor_auto": auto, "clips_per_cpu_s": n / r["cpu_seconds"], "floor_clips_per_cpu_s": n / one["cpu_seconds"],
        # per CPU second: what a core does, whatever the threading; per core: wall rates over the
        # cores each used (preprocess: its workers; the AUTO floor: the machine's cores)
        "vs_floor_per_cpu_s": one["cpu_seconds"] / r["cpu_seconds"],
        "vs_floor_per_core": (n / r["seconds"] / workers) / (n / auto["seconds"] / cores),
    }  # fmt: skip


def train_measured(model: str, args: argparse.Namespace) -> dict:
    runs, (split, fold_dir) = args.out / "runs", SPLIT[args.dataset]
    shutil.rmtree(runs / f"{args.dataset}_{model}", ignore_errors=True)
    cmd = [PY, "-m", "app", "train", "--config", f"app/configs/{args.dataset}_{model}.toml",
           f'--data.root="{args.root}"', f'--data.cache="{args.cache}"', *split,
           f"--train.epochs={args.epochs}", "--train.patience=0", f'--train.out_dir="{runs}"',
           *args.override]  # fmt: skip
    r = measured(cmd, args.out / "logs" / f"train_{model}")
    fold = runs / f"{args.dataset}_{model}" / fold_dir
    rows = list(csv.DictReader((fold / "metrics.csv").open()))
    test = json.loads((fold / "test_metrics.json").read_text())
    metric = "accuracy" if "accuracy" in test else "map"  # Hollywood2 is multi-label: mean AP
    return {**r, "epoch_seconds": [float(row["epoch_seconds"]) for row in rows],
            "data_share": [float(row["data_share"]) for row in rows], "metric": metric,
            "test": test[metric], "chance": 1 / len(test["confusion"]) if "confusion" in test else None}


def recurrence_share(args: argparse.Namespace) -> dict:
    """Time of the recurrence (forward + backward) / time of the whole training step, summed over
    steps sampled evenly from fold 0's first epoch plan."""
    from app.train import build_model, classifier_weights, train_step
    from data.batch import pad_collate
    from data.datasets import BucketBatchSampler, build_datasets
    from models.gru_recurrence import gru_recurrence

    split = [a for a in SPLIT[args.dataset][0] if a.startswith("--data.")]
    cfg = config(args.dataset, "tt_gru", (f'--data.root="{args.root}"', f'--data.cache="{args.cache}"', *split,
                                          *args.override))  # fmt: skip
    data = build_datasets(cfg.data, fold=0 if SPLIT[args.dataset][1] else None, seed=cfg.train.seed)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=len(data.class_names), input_spec=data.input_spec)
    opt = torch.optim.Adam(model.parameters(), cfg.train.lr)
    sampler = BucketBatchSampler(data.train.lengths, batch_size=cfg.data.batch_size, seed=cfg.train.seed,
                                 batch_frames=cfg.data.batch_frames)  # fmt: skip
    plan = sampler.plan()
    picked = plan[:: max(1, len(plan) // args.sample_steps)][: args.sample_steps]
    H = model.hidden_size
    step_s = rec_s = 0.0
    for parts in picked:
        batches = [pad_collate([data.train[key] for key in part]) for part in parts]
        t = time.perf_counter()
        train_step(model, batches, opt, None, l2=cfg.train.l2, l2_weights=classifier_weights(model),
                   grad_clip=cfg.train.grad_clip, multi_label=data.multi_label, device=torch.device("cpu"))  # fmt: skip
        step_s += time.perf_counter() - t
        for b in batches:
            lengths = sorted(b.lengths.tolist(), reverse=True)
            sizes = [sum(n > t for n in lengths) for t in range(lengths[0])]
            gx = torch.randn(sum(sizes), 3 * H, requires_grad=True)
            U_zr = (0.05 * torch.randn(H, 2 * H)).requires_grad_()
            U_h = (0.05 * torch.randn(H, H)).requires_grad_()
            mask = torch.ones(len(lengths), H)
            t = time.perf_counter()
            gru_recurrence(gx, sizes, U_zr, U_h, mask).sum().backward()
            rec_s += time.perf_counter() - t
    return {"steps": len(picked), "step_seconds": step_s, "recurrence_seconds": rec_s, "share": rec_s / step_s}


def report(result: dict) -> None:
    pre = result.get("preprocess")
    if pre:
        print(f"preprocess: {pre['clips']} clips in {pre['seconds']:.1f} s ({pre['cpu_seconds']:.1f} CPU s), "
              f"cache {pre['cache_gb']:.1f} GB, peak PSS {pre['peak_pss_gib']:.2f} GiB; "
              f"{pre['clips_per_cpu_s']:.1f} clips per CPU second vs the floor's {pre['floor_clips_per_cpu_s']:.1f} "
              f"(one thread): {pre['vs_floor_per_cpu_s']:.2f}x; per core against the FFmpeg-threaded floor "
              f"({pre['floor_auto']['seconds']:.1f} s on {os.cpu_count()} cores): {pre['vs_floor_per_core']:.2f}x")
    for model, r in result["train"].items():
        epochs = ", ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        shares = ", ".join(f"{s:.3f}" for s in r["data_share"])
        chance = f" (chance {r['chance']:.3f})" if r["chance"] else ""
        print(f"{model}: epoch {epochs} s, data share {shares}, test {r['metric']} {r['test']:.3f}{chance}, "
              f"run {r['seconds']:.1f} s, peak PSS {r['peak_pss_gib']:.2f} GiB")
    tt, gru = result["train"].get("tt_gru"), result["train"].get("gru")
    if tt and gru:
        print(f"GRU / TT-GRU epoch time: {gru['epoch_seconds'][0] / tt['epoch_seconds'][0]:.2f}x")
    rec = result.get("recurrence")
    if rec:
        line = (f"recurrence: {rec['share']:.1%} of a TT-GRU training step ({rec['recurrence_seconds']:.1f} s of "
                f"{rec['step_seconds']:.1f} s over {rec['steps']} sampled steps)")
        if tt:  # the epoch is its steps plus the waits for the loader
            line += f", so about {rec['share'] * (1 - tt['data_share'][0]):.1%} of the epoch"
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.rehearse_paper_scale", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(SPLIT), default="ucf11")
    p.add_argument("--root", type=Path, required=True, help="the dataset's stand-in (scripts/make_paper_scale.py)")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="run folders, logs and rehearsal.json")
    p.add_argument("--models", nargs="+", default=["tt_gru", "gru"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="preprocess workers")
    p.add_argument("--no-preprocess", action="store_true", help="keep the cache as it is")
    p.add_argument("--sample-steps", type=int, default=12, help="steps timed for the recurrence share (0: none)")
    p.add_argument("--override", action="append", default=[],
                   help="a train override, repeatable: --override=--data.batch_frames=0")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    result: dict = {"train": {}}
    if not args.no_preprocess:
        result["preprocess"] = preprocess_step(args.dataset, args.root, args.cache, args.out, args.workers)
    for model in args.models:
        result["train"][model] = train_measured(model, args)
    if args.sample_steps:
        result["recurrence"] = recurrence_share(args)
    (args.out / "rehearsal.json").write_text(json.dumps(result, indent=1))
    report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
