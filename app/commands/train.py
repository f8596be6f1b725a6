"""Train a model from an experiment config (one flat TOML: [data], [model], [train]).

    python -m app train --config app/configs/ucf11_tt_gru.toml [--data.fold=0] [--train.lr=1e-4] [--resume]

Overrides are `--section.key=value` with TOML values. k-fold datasets run every fold in sequence
(or one with `--data.fold=K` / `--fold K`) and report mean +- std. The same command runs
distributed under `torchrun --nproc_per_node N -m app train ...` (gloo on CPU, nccl on GPU).
`--resume` continues a crashed or interrupted run from its last saved state, with the same result
as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os

from app.config import add_override_arguments, collect_overrides
from app.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment TOML, e.g. app/configs/demo_tt_gru.toml")
    parser.add_argument("--fold", type=int, help="run only this test fold (same as --data.fold=K)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's resume state")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_override_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from app.config import load_config
    from app.train import train_experiment
    from data.datasets import DataError

    overrides = collect_overrides(args)
    if args.fold is not None:
        overrides.append(f"--data.fold={args.fold}")
    cfg = load_config(args.config, overrides)
    dist_info = _init_distributed(cfg.train.device)
    finished = False
    try:
        summary = train_experiment(cfg, resume=args.resume, dist_info=dist_info,
                                   progress=False if args.no_progress else None)
        finished = True
    except DataError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:  # model/data mismatch (in_modes vs frame size, num_classes)
        raise UsageError(str(e)) from None
    finally:
        _finish_distributed(dist_info, finished)
    if dist_info.main:
        print(_summary_line(summary))
        print(f"run folder: {os.path.join(cfg.train.out_dir, cfg.train.name)}")
    return 0


def _summary_line(summary: dict) -> str:
    if "folds" in summary:
        parts = [f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in summary.items()
                 if isinstance(v, dict) and k in ("accuracy", "map", "macro_map", "gap")]
        return f"{summary['folds']} folds: " + ", ".join(parts)
    keep = {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}
    return "test: " + json.dumps(keep)


def _init_distributed(device: str):
    """Join the torchrun job when launched by torchrun (WORLD_SIZE set), else a one-process job."""
    from app.train import Dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def _finish_distributed(dist_info, finished: bool) -> None:
    """Leave the process group. After a finished run every rank first waits for the others (rank 0
    writes the report after the last collective), so no rank closes its connections while a peer
    still holds them (the suspected cause of a rare abort at exit under load, "terminate called
    without an active exception", in a rank that had finished). After a failure there is no barrier:
    a dead peer would hold it until the timeout."""
    if dist_info.world > 1:
        import torch.distributed as dist

        if finished:
            dist.barrier()
        dist.destroy_process_group()

