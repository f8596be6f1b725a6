"""Evaluate a checkpoint on a split of its dataset: metrics as JSON and as a table.

    python -m app evaluate --checkpoint runs/demo_tt_gru --split test
    python -m app evaluate --checkpoint runs/ucf11_tt_gru --config app/configs/ucf11_tt_gru.toml --fold 2

The data config comes from --config (plus `--section.key=value` overrides) or, by default, from the
training config stored in the checkpoint. A k-fold run folder without --fold is evaluated fold by
fold (each fold's best checkpoint on its own test fold) and summarized as mean +- std.
Single-label data: accuracy, macro MAP, per-class precision/recall/F1/AP, confusion matrix;
multi-label: MAP; YouTube-8M: GAP, MAP, Hit@1, PERR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.config import add_override_arguments, collect_overrides
from app.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder, NAME.json or NAME.safetensors")
    parser.add_argument("--config", help="experiment TOML (default: the config stored in the checkpoint)")
    parser.add_argument("--fold", type=int, help="test fold of a k-fold run (default: all folds of a run folder)")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"), help="split to score")
    parser.add_argument("--output", help="JSON file for the metrics (default: beside the checkpoint)")
    parser.add_argument("--batch-size", type=int, help="clips per batch (default: the config's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_override_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from app.checkpoint import CheckpointError

    run_dir = Path(args.checkpoint)
    fold_dirs = sorted(run_dir.glob("fold[0-9]*")) if run_dir.is_dir() else []
    if args.fold is not None and fold_dirs:
        targets = [(args.fold, run_dir / f"fold{args.fold}")]
    elif fold_dirs:
        targets = [(int(d.name[4:]), d) for d in fold_dirs]
    else:
        targets = [(args.fold, run_dir)]
    results = []
    for fold, path in targets:
        try:
            single_out = Path(args.output) if args.output and len(targets) == 1 else None
            result = evaluate_one(path, args, fold, output=single_out)
        except CheckpointError as e:
            raise UsageError(str(e)) from None
        results.append(result)
        print(format_table(result, title=f"{result['checkpoint']} | {args.split}" +
                           (f" | fold {result['fold']}" if result.get("fold") is not None else "")))
    if len(results) > 1:
        summary = {}
        for key in ("accuracy", "macro_map", "map", "gap", "hit_at_1", "perr"):
            values = [r["metrics"][key] for r in results if key in r["metrics"]]
            if values:
                import numpy as np

                summary[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
        out = Path(args.output) if args.output else run_dir / f"eval_{args.split}.json"
        _write(out, {"folds": results, "summary": summary})
        print(" | ".join(f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in summary.items()))
        print(f"metrics: {out}")
    return 0


def evaluate_one(path: Path, args: argparse.Namespace, fold: int | None, *, output: Path | None) -> dict[str, Any]:
    """Metrics of one checkpoint on one split; writes them as JSON (default: beside it) and returns them."""
    import torch

    from app.checkpoint import load_checkpoint
    from app.config import config_from_dict, load_config
    from app.train import Dist, predict, score
    from data.datasets import DataError, build_datasets

    ckpt = load_checkpoint(path)
    stored = ckpt.train_config
    if args.config:
        cfg = load_config(args.config, collect_overrides(args))
    elif stored:
        from app.config import parse_override

        raw = json.loads(json.dumps(stored))
        for item in collect_overrides(args):
            section, key, value = parse_override(item)
            raw.setdefault(section, {})[key] = value
        cfg = config_from_dict(raw)
    else:
        raise UsageError(f"{path}: the checkpoint holds no training config; pass --config")
    if fold is None and cfg.data.fold < 0:
        fold = stored.get("data", {}).get("fold", -1) if stored else -1
    fold = fold if fold is not None and fold >= 0 else cfg.data.fold
    try:
        data = build_datasets(cfg.data, fold=fold if fold >= 0 else None, seed=cfg.train.seed)
    except DataError as e:
        raise UsageError(str(e)) from None
    if data.class_names != ckpt.class_names:
        raise UsageError(f"{path}: the checkpoint's classes differ from the data's ({len(ckpt.class_names)} vs "
                         f"{len(data.class_names)}); wrong --config?")
    ds = getattr(data, args.split)
    if ds is None:
        raise UsageError(f"the {cfg.data.dataset} config has no {args.split} split")
    want = args.device
    device = torch.device("cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu")
    model = ckpt.model.to(device)
    ids, scores, targets = predict(
        model, ds, batch_size=args.batch_size or cfg.data.eval_batch_size or cfg.data.batch_size,
        workers=cfg.data.workers, device=device, dist_info=Dist(),
    )
    metrics = score(scores, targets, class_names=data.class_names, multi_label=data.multi_label,
                    dataset=cfg.data.dataset)
    result = {
        "checkpoint": str(ckpt.path), "split": args.split, "fold": fold if fold >= 0 else None,
        "dataset": cfg.data.dataset, "class_names": data.class_names, "metrics": metrics,
    }
    out = output or ckpt.path.parent / f"eval_{args.split}.json"
    _write(out, result)
    print(f"metrics: {out}")
    return result


def _write(path: Path, obj: Any) -> None:
    from preprocessing.fileio import write_json

    write_json(path, obj)


def format_table(result: dict[str, Any], *, title: str = "") -> str:
    """Headline metrics, then one row per class (precision, recall, F1, AP, support)."""
    m = result["metrics"]
    lines = [title] if title else []
    head = [(k, m[k]) for k in ("accuracy", "macro_map", "map", "top1", "gap", "hit_at_1", "perr", "loss") if k in m]
    lines.append("  ".join(f"{k} {v:.4f}" for k, v in head) + f"  clips {m.get('num_clips', m.get('num_videos', 0))}")
    per_class = m.get("per_class")
    if per_class:
        width = max(len(c) for c in per_class)
        lines.append(f"{'class':<{width}}  precision  recall     f1      ap  support")
        for name, r in per_class.items():
            lines.append(f"{name:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  "
                         f"{r['ap']:6.3f}  {r['support']:7d}")
    if "confusion" in m and len(m["confusion"]) <= 20:
        names = result["class_names"]
        lines.append("confusion (rows true, columns predicted): " + ", ".join(names))
        lines += ["  " + " ".join(f"{v:4d}" for v in row) for row in m["confusion"]]
    return "\n".join(lines)
