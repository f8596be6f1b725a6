"""Your own videos to a trained, evaluated checkpoint in one command.

    vidclass fit DIR --out runs/NAME        (or: python -m app fit DIR --out runs/NAME)

DIR holds one folder of videos per class (`DIR/<class>/*.mp4`), or `DIR/train/<class>/` and
`DIR/test/<class>/`. fit preprocesses the videos into a cache (kept, resumable), chooses the frame
size, the TT-GRU's modes, the epochs and early stopping by the rules in app/fit.py, prints every
choice and saves the run's config as NAME/fit.toml (`python -m app train --config NAME/fit.toml`
repeats the run), trains, scores the test videos and writes NAME/report.html (curves, confusion
matrix, per-class table). Ctrl-C, then the same command, resumes. Then:

    vidclass classify my_new_videos/ --checkpoint runs/NAME --output out/mine
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.errors import UsageError
from app.precision import PRECISIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="DIR/<class>/*.mp4, or DIR/train/<class>/ and DIR/test/<class>/")
    p.add_argument("--out", required=True, help="run folder to create (or resume), e.g. runs/mine")
    p.add_argument("--size", help="frame WIDTHxHEIGHT (default: 160x120, smaller for smaller videos)")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second sampled (default 24)")
    p.add_argument("--hidden", type=int, default=128, help="TT-GRU hidden units (default 128)")
    p.add_argument("--epochs", type=int, help="epochs (default: about 12,000 steps' worth, 3 to 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data order (default 0)")
    p.add_argument("--cache", help="frame cache folder (default: OUT/cache)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="decoding processes (default: all cores)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or bf16: training under torch.autocast (default fp32; docs/RESULTS.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from app.commands.preprocess import parse_size
    from app.fit import plan_fit

    if args.hidden < 2 or args.fps <= 0 or (args.epochs is not None and args.epochs < 1) or args.workers < 1:
        raise UsageError("--hidden must be >= 2, --fps > 0, --epochs >= 1 and --workers >= 1")
    out = Path(os.path.abspath(args.out))
    plan = plan_fit(
        Path(args.folder), out=out, cache=Path(args.cache) if args.cache else None,
        size=parse_size(args.size) if args.size else None, fps=args.fps, hidden=args.hidden,
        epochs=args.epochs, seed=args.seed, precision=args.precision,
    )
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    _print_choices(plan)
    _save_plan(plan, out)
    _preprocess(plan, workers=args.workers, progress=not args.no_progress)
    result = _train(plan, progress=not args.no_progress)
    report = _write_report(plan, out, result)
    _print_result(plan, out, result, report)
    return 0


def _print_choices(plan) -> None:
    d, m, t = plan.config.data, plan.config.model.params, plan.config.train
    rows = [
        ("classes", f"{len(plan.classes)}: {', '.join(plan.classes)}", f"{len(plan.clips)} videos"),
        ("split", d.split if d.split != "official" else "train/ and test/", plan.reasons["split"]),
        ("frames", f"{d.size[0]}x{d.size[1]} at {d.fps:g} fps", plan.reasons["size"]),
        ("model", f"tt_gru, in_modes {list(m['in_modes'])}, hidden_modes {list(m['hidden_modes'])}, "
                  f"ranks {list(m['ranks'])}", "rows and columns x RGB each split in two balanced modes"),
        ("dropout", f"{m['dropout']:g}", plan.reasons["dropout"]),
        ("epochs", f"{t.epochs}, early stop after {t.patience} without a better val accuracy",
         plan.reasons["epochs"]),
        ("optimizer", f"Adam lr {t.lr:g}, halved every {t.lr_decay_examples} clips, batch {d.batch_size}",
         "about a third of the epochs per halving"),
    ]
    for name, value, why in rows:
        print(f"{name:>9}: {value}  ({why})")


def _save_plan(plan, out: Path) -> None:
    """NAME/fit.toml (the whole config) and NAME/fit_videos.txt (the videos it was planned on). A run
    folder holding another plan, other videos, or a run that fit did not start is refused, not mixed:
    resuming it would train on one split and test on another."""
    from app.config import config_to_toml
    from preprocessing.fileio import atomic_open
    from preprocessing.names import printable_name

    text = config_to_toml(plan.config)
    videos = "".join(f"{c.clip_id}\n" for c in plan.clips)
    path, listed = out / "fit.toml", out / "fit_videos.txt"
    shown = printable_name(out)
    foreign = ("resume.pt", "config.toml", "checkpoints", "fold0")
    if not path.is_file() and any((out / p).exists() for p in foreign):
        raise UsageError(f"{shown} holds a run that fit did not start; use another --out")
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise UsageError(f"{shown} holds another fit (its fit.toml differs from these choices); "
                         "use another --out, or delete the folder to start over")
    if listed.is_file() and listed.read_text(encoding="utf-8") != videos:
        before = set(listed.read_text(encoding="utf-8").splitlines())
        now = {c.clip_id for c in plan.clips}
        raise UsageError(f"the videos changed since {shown} was fitted ({len(now - before)} added, "
                         f"{len(before - now)} gone): use another --out, or delete it to start over")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(listed, "w", encoding="utf-8") as f:
        f.write(videos)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    shown = printable_name(path)
    print(f"config: {shown} (python -m app train --config {shown} repeats the run)")


def _preprocess(plan, *, workers: int, progress: bool) -> None:
    from app.commands.preprocess import preprocess_with_progress
    from data.preprocess_job import PreprocessConfig

    d = plan.config.data
    config = PreprocessConfig(dataset="folder", root=Path(d.root), cache_dir=Path(d.cache), fps=d.fps,
                              size=tuple(d.size), workers=workers)
    summary = preprocess_with_progress(config, progress=progress)
    print(f"preprocess: {summary.ok} decoded, {summary.skipped} already cached, {summary.failed} failed")
    if summary.ok + summary.skipped == 0:
        raise UsageError("no video could be decoded; see the failed: lines above")


def _train(plan, *, progress: bool) -> dict:
    from app.train import train_experiment
    from data.datasets import DataError

    try:
        return train_experiment(plan.config, resume=True, progress=progress)
    except (DataError, ValueError) as e:
        raise UsageError(str(e)) from None


def _write_report(plan, out: Path, result: dict) -> Path:
    from app.fit_report import write_fit_report

    run_dir = out if plan.config.data.fold < 0 else out / f"fold{plan.config.data.fold}"
    return write_fit_report(out / "report.html", run_dir=run_dir, plan=plan, result=result)


def _print_result(plan, out: Path, result: dict, report: Path) -> None:
    from app.commands.evaluate import format_table

    print(format_table({"metrics": result, "class_names": list(plan.classes)}, title="test"))
    print(f"report: {report}")
    print(f"classify with it: python -m app classify VIDEOS --checkpoint {out} --output out/predictions")
