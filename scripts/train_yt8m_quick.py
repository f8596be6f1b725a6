"""In-memory training of a video-level YouTube-8M model, for tuning and the results table.

    python -m scripts.train_yt8m_quick --model logistic --epochs 40 --lr 0.01
    python -m scripts.train_yt8m_quick --model qrnn --set hidden_size=2048 num_layers=2 window=1 \
        --epochs 20 --val-shards 8            # tune on the last 8 TRAIN shards, never on validate

The video-level split (18k x 1152 floats) is loaded once into memory; every epoch shuffles it and
runs the engine's step (`app.train`): Adam on BCE-with-logits plus `l2 * sum(w^2)` over the
classifier weights, gradient-norm clipping, staircase lr decay every `lr_decay_examples`. One
difference, `--loss`: "sum" (default) sums the BCE over the 3,862 classes and averages over the
batch, like the starter's CrossEntropyLoss; "mean" averages over classes too, like the engine.
With Adam's eps = 1e-8 the mean makes the weights of rare classes learn slower (their gradients
shrink 3,862-fold to ~1e-8), so the logistic model ends lower in GAP after the same epochs
(docs/RESULTS.md, "Figures formerly quoted in the code"). The evaluation set is scored with `app.metrics.yt8m` at the end
(and every `--eval-every` epochs). `--out` saves a checkpoint in the project format.

Tuning options beside the engine's: `--subset N` trains on N videos drawn from the training shards
(nested for one seed, so a learning curve adds data to the same videos); `--class-priors` starts
each class at its training frequency (the engine's `train.class_priors`); `--label-smoothing`,
`--teacher/--distill` (targets mixed with a checkpoint's probabilities), `--weight-decay` (AdamW on
the matrices), `--l2-normalize` and `--loss-scale` are the variants docs/RESULTS.md scores.

The shared engine (`python -m app train --config app/configs/yt8m_video_*.toml`) is the main path;
this script exists because streaming 64 shards per epoch is slow on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import time

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from app.ensemble import ensemble_probs, load_ensemble
from app.metrics.yt8m import YT8MEvaluator
from app.train import classifier_weights, lr_factor, train_step
from data.batch import Batch
from data.specs import FeatureSpec
from data.yt8m import list_shards, load_arrays, read_vocabulary
from models import create_model
from models.common import FEATURE_DIM, NUM_CLASSES, set_class_priors

TRAIN = "../shared/yt8m/train/*.tfrecord"
EVAL = "../shared/yt8m/validate/*.tfrecord"


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[i : i + batch_size])[:, None]  # (B, 1, 1152)
        out.append(torch.sigmoid(model(xb, torch.ones(len(xb), dtype=torch.long))).numpy())
    return np.concatenate(out)


def score(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict:
    ev = YT8MEvaluator(num_classes=y.shape[1])
    for i in range(0, len(x), 2048):
        ev.update(predict(model, x[i : i + 2048]), y[i : i + 2048])
    return ev.result()


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, or AdamW decaying the matrices only when weight_decay > 0 (a decayed bias would lose its prior)."""
    if weight_decay <= 0:
        return torch.optim.Adam(model.parameters(), lr=lr)
    mats = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    return torch.optim.AdamW([{"params": mats, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr)


def l2_normalize(x: np.ndarray, rgb: int = 1024) -> np.ndarray:
    """Each video's rgb (first 1,024) and audio (last 128) features scaled to unit L2 norm."""
    parts = (x[:, :rgb], x[:, rgb:])
    return np.concatenate([p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-6) for p in parts], axis=1)


def mix_targets(y: torch.Tensor, q: torch.Tensor, w: float) -> torch.Tensor:
    """(1 - w) y + w q: label smoothing with q the class frequencies, distillation with q a teacher's
    probabilities (BCE takes soft targets as they are)."""
    return y if w <= 0 else (1 - w) * y + w * q


def subset_indices(total: int, n: int) -> np.ndarray:
    """n of `total` videos drawn with a fixed seed, in file order; a smaller n is a subset of a larger
    one (nested training sets for a learning curve)."""
    return np.sort(np.random.default_rng(1234).permutation(total)[:n])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="logistic")
    p.add_argument("--set", nargs="*", default=[], help="model config key=value pairs")
    p.add_argument("--train", default=TRAIN)
    p.add_argument("--eval", default=EVAL)
    p.add_argument("--val-shards", type=int, default=0, help="hold out the last N train shards as the evaluation set")
    p.add_argument("--subset", type=int, default=0, help="train on this many videos, drawn at random (seeded) from the training shards: a learning curve")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-decay", type=float, default=1.0, help="multiply the lr by this every --lr-decay-examples")
    p.add_argument("--lr-decay-examples", type=int, default=0)
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the classifier weights (engine's train.l2)")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decoupled decay on the matrices (biases keep their prior)")
    p.add_argument("--teacher", nargs="+", default=[], help="checkpoints whose mean probabilities on the training videos become part of the targets")
    p.add_argument("--distill", type=float, default=0.5, help="with --teacher: targets (1 - w) y + w * p_teacher")
    p.add_argument("--class-priors", action="store_true", help="start each class at its frequency in train instead of init_prior")
    p.add_argument("--l2-normalize", action="store_true", help="scale the rgb and the audio part of every video to unit L2 norm")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="targets y (1 - e) + e * (class frequency in train)")
    p.add_argument("--loss", choices=("sum", "mean"), default="sum", help="BCE over classes: starter's sum or engine's mean")
    p.add_argument("--loss-scale", type=float, default=0.0, help="multiply the mean BCE by this instead (between mean = 1 and sum = 3,862)")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="", help="save a checkpoint here (stem or .safetensors)")
    p.add_argument("--ema", nargs="*", type=float, default=[], help="also score exponential moving averages of the weights with these decays")
    p.add_argument("--ensemble", nargs="+", default=[], help="only score the mean probabilities of these checkpoints")
    return p


def _score_ensemble(checkpoints: list[str], xe: np.ndarray, ye: np.ndarray) -> None:
    """Print the metrics of the mean probabilities of `checkpoints` on (xe, ye)."""
    members = load_ensemble(checkpoints)
    ev = YT8MEvaluator(num_classes=ye.shape[1])
    for i in range(0, len(xe), 2048):
        xb = torch.from_numpy(xe[i : i + 2048])[:, None]  # (B, 1, 1152)
        ev.update(ensemble_probs(members, xb, torch.ones(len(xb), dtype=torch.long)).numpy(), ye[i : i + 2048])
    print("ensemble", json.dumps({k: round(v, 4) for k, v in ev.result().items()}), flush=True)


def _load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The train and eval arrays the options name: (N, 1152) features and (N, K) labels each."""
    files = list_shards(args.train)
    if args.val_shards:
        train_files, eval_files = files[: -args.val_shards], files[-args.val_shards :]
    else:
        train_files, eval_files = files, list_shards(args.eval)
    t0 = time.time()
    x, y, _ = load_arrays(train_files)
    xe, ye, _ = load_arrays(eval_files)
    print(f"loaded {len(x)} train / {len(xe)} eval videos in {time.time() - t0:.1f}s", flush=True)
    if args.l2_normalize:
        x, xe = l2_normalize(x), l2_normalize(xe)
    if args.subset:
        keep = subset_indices(len(x), args.subset)
        x, y = x[keep], y[keep]
        print(f"training on {len(x)} of them (--subset)", flush=True)
    return x, y, xe, ye


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x, y, xe, ye = _load(args)

    if args.ensemble:
        _score_ensemble(args.ensemble, xe, ye)
        return 0

    cfg = {"num_classes": NUM_CLASSES, **_parse_set(args.set)}
    model = create_model(args.model, **cfg)
    opt = make_optimizer(model, args.lr, args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: lr_factor(step, batch_examples=args.batch_size, decay=args.lr_decay, every_examples=args.lr_decay_examples),
    )
    l2_weights = classifier_weights(model) if args.l2 > 0 else []
    loss_scale = float(NUM_CLASSES) if args.loss == "sum" else 1.0  # the engine's train.loss = "sum_classes"
    if args.loss_scale > 0:
        loss_scale = args.loss_scale
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    prior = torch.from_numpy(y.mean(0, dtype=np.float32))  # (K,) class frequency (smoothing, priors); no float copy of y
    if args.teacher:
        from app.checkpoint import load_checkpoint

        soft = torch.from_numpy(np.mean([predict(load_checkpoint(t).model, x) for t in args.teacher], axis=0))  # (N, K)
        yt = mix_targets(yt.float(), soft, args.distill)
        print(f"targets: {1 - args.distill} x labels + {args.distill} x mean of {', '.join(args.teacher)}", flush=True)
    if args.class_priors:
        set_class_priors(model.classifier, prior, floor=1.0 / (len(x) + 1))
    emas = {d: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d)) for d in args.ema}
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, total = time.time(), 0.0
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // args.batch_size)):
            idx_t = torch.from_numpy(idx)
            batch = Batch(x=xt[idx_t][:, None], lengths=torch.ones(len(idx), dtype=torch.long),
                          y=mix_targets(yt[idx_t].float(), prior, args.label_smoothing), ids=[])  # (B, 1, 1152), (B, K); fmt: skip
            loss, _, _ = train_step(model, batch, opt, sched, l2=args.l2, l2_weights=l2_weights,
                                    grad_clip=args.clip, multi_label=True, device=torch.device("cpu"),
                                    loss_scale=loss_scale)  # fmt: skip
            total += loss.item() * len(idx)
            for ema in emas.values():
                ema.update_parameters(model)
        line = f"epoch {epoch} loss {total / len(x):.6f} ({time.time() - t0:.1f}s)"
        if args.eval_every and (epoch % args.eval_every == 0 or epoch == args.epochs):
            m = score(model, xe, ye)
            line += " | " + " ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "num_videos")
            for d, ema in emas.items():
                line += f" | ema {d} gap {score(ema.module, xe, ye)['gap']:.4f}"
        print(line, flush=True)
    metrics = score(model, xe, ye)
    print("final", json.dumps({k: round(v, 4) for k, v in metrics.items()}), flush=True)
    if args.out:
        from app.checkpoint import save_checkpoint

        save_checkpoint(
            args.out,
            model,
            class_names=read_vocabulary(),
            input_spec=FeatureSpec(dims=FEATURE_DIM, level="video"),
            multi_label=True,
            train_config={"script": "scripts.train_yt8m_quick", **vars(args)},
            metrics=metrics,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
