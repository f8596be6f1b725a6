"""The training engine: one loop, explicit arguments, resumable, single process or DDP.

`train_run(cfg, run_dir=..., fold=...)` trains one model (one fold of a k-fold protocol):
Adam, an L2 penalty on the classifier weights, gradient clipping, early stopping on a validation
part of the training clips, then scores the best checkpoint on the test part. `train_experiment`
runs every fold in sequence and writes the mean +- std. Under `torchrun` the same code runs
DistributedDataParallel: gloo on CPU, nccl on GPU; rank 0 alone writes files.

Run folder (one per run; k-fold experiments get `fold<k>/` sub-folders and a `summary.json`):

    config.toml            the resolved experiment config
    log.txt                plain-text log
    metrics.csv            one row per epoch (rewritten whole, consistent with the resume state)
    curves.png, confusion.png
    checkpoints/best.{safetensors,json}, checkpoints/last.{safetensors,json}   (app.checkpoint)
    resume.pt              resume state (torch.save; read back with weights_only=True)
    test_metrics.json      the best checkpoint's metrics on the test split

Resume state: model and optimizer state dicts, the LR-scheduler state, torch/CUDA RNG states,
epoch, batches done in that epoch, global step, early-stopping state, the metric history and the
running sums of the epoch in progress. Data order is a pure function of (seed, epoch) and each
clip's time window of (seed, epoch, clip), so `--resume` after a crash, Ctrl-C or SIGKILL
reproduces the uninterrupted run exactly (bit for bit on CPU; on GPU with `deterministic = true`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from app.checkpoint import describe_size, save_checkpoint
from app.config import ExperimentConfig, TrainConfig, config_to_toml
from app.precision import autocast
from data.batch import Batch, pad_collate
from data.datasets import BucketBatchSampler, build_datasets, eval_batches, is_k_fold
from data.specs import InputSpec, PixelSpec, spec_from_json
from preprocessing.fileio import atomic_open, atomic_path, write_json

log = logging.getLogger(__name__)

RESUME_FORMAT = "vidclass-resume/1"


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a (possibly one-process) job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


# --- model and optimization pieces -------------------------------------------------------------------


def build_model(cfg: ExperimentConfig, *, num_classes: int, input_spec: InputSpec) -> nn.Module:
    """The registered model, with num_classes from the data and a pixel model's input size from the
    frame size (W*H*3): `input_size` is filled in, `in_modes` must multiply to it."""
    from models import create_model, model_config_class

    params = dict(cfg.model.params)
    fields = {f.name: f for f in dataclasses.fields(model_config_class(cfg.model.name))}
    if "num_classes" in fields and params.setdefault("num_classes", num_classes) != num_classes:
        raise ValueError(f"model.num_classes = {params['num_classes']} but the data has {num_classes} classes")
    input_spec = spec_from_json(input_spec)  # a PixelSpec / FeatureSpec, or its JSON form
    if isinstance(input_spec, PixelSpec):
        W, H = input_spec.size
        D = W * H * 3
        if "input_size" in fields and params.setdefault("input_size", D) != D:
            raise ValueError(f"model.input_size = {params['input_size']}, frames have W*H*3 = {D} values")
        in_modes = params.get("in_modes", getattr(fields.get("in_modes"), "default", None))
        if in_modes is not None and math.prod(in_modes) != D:
            raise ValueError(
                f"model.in_modes {list(in_modes)} multiply to {math.prod(in_modes)}, but {W}x{H} RGB frames "
                f"have W*H*3 = {D} values"
            )
    return create_model(cfg.model.name, **params)


def classifier_weights(model: nn.Module) -> list[nn.Parameter]:
    """Weight matrices of the classifier (module `classifier` or `head`): what the L2 penalty covers."""
    model = getattr(model, "module", model)
    head = getattr(model, "classifier", None) or getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ValueError(f"{type(model).__name__} has no `classifier` or `head` module for the L2 penalty")
    return [p for name, p in head.named_parameters() if name.endswith("weight")]


def loss_fn(logits: torch.Tensor, y: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.cross_entropy(logits, y)


def train_step(
    model: nn.Module,
    batch: Batch | Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    l2: float,
    l2_weights: list[nn.Parameter],
    grad_clip: float,
    multi_label: bool,
    device: torch.device,
    loss_scale: float = 1.0,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch, or on a batch given as its micro-batches (their gradients
    accumulated: the step of the whole batch); returns (data loss, logits, targets on the device).
    The objective is `loss_scale * loss + l2 * sum(w^2)` (loss_scale = K sums a multi-label loss over classes).
    `precision="bf16"` runs the forward under torch.autocast; weights, gradients and the loss stay float32."""
    parts = [batch] if isinstance(batch, Batch) else list(batch)
    sizes = [b.y.shape[0] for b in parts]
    total = sum(sizes)
    optimizer.zero_grad(set_to_none=True)
    losses, logits_all, targets = [], [], []
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        x, y = part.x.to(device, non_blocking=True), part.y.to(device, non_blocking=True)
        with _sync_on(model, last):  # under DDP, gradients are averaged over ranks once, at the end
            with autocast(device, precision):
                logits = model(x, part.lengths)
            logits = logits.float()
            loss = loss_fn(logits, y, multi_label) * (sizes[k] / total)  # the batch mean's share
            objective = loss * loss_scale if loss_scale != 1.0 else loss
            if last and l2_weights:
                objective = objective + l2 * sum((w * w).sum() for w in l2_weights)
            objective.backward()
        losses.append(loss.detach())
        logits_all.append(logits.detach())
        targets.append(y)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return torch.stack(losses).sum(), torch.cat(logits_all), torch.cat(targets)


def _sync_on(model: nn.Module, last: bool) -> Any:
    """DDP's `no_sync()` for every micro-batch but the last; nothing to do for a plain module."""
    no_sync = getattr(model, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()


def lr_factor(step: int, *, batch_examples: int, decay: float, every_examples: int) -> float:
    """Staircase decay: decay ** floor(examples seen / every_examples) (YouTube-8M starter style)."""
    if every_examples <= 0 or decay == 1.0:
        return 1.0
    return decay ** ((step * batch_examples) // every_examples)


# --- data loaders ------------------------------------------------------------------------------------


# Batches each loader worker prepares ahead (torch's default is 2). A batch of 16 whole UCF11 clips
# at 160x120 is 0.45 GB of uint8 on average and up to 1.4 GB, padded to its longest clip; one step
# on it takes seconds, reading it a fraction of that, so one batch ahead per worker keeps the model
# fed while memory stays at about (workers + 1) batches.
PREFETCH = 1


def _prefetch(workers: int) -> dict[str, int]:
    return {"prefetch_factor": PREFETCH} if workers > 0 else {}  # (torch refuses it without workers)


def train_loader(
    ds: Any, cfg: ExperimentConfig, *, seed: int, dist_info: Dist, pin: bool
) -> tuple[DataLoader, BucketBatchSampler | None]:
    workers = cfg.data.workers
    gen = torch.Generator().manual_seed(seed)  # worker seeds drawn from here, not the global RNG
    if isinstance(ds, IterableDataset):  # YouTube-8M: whole batches made where the records are read
        loader = DataLoader(
            ds.batches(cfg.data.batch_size), batch_size=None, num_workers=workers, collate_fn=pad_collate,
            pin_memory=pin, generator=gen, **_prefetch(workers),
        )
        return loader, None
    sampler = BucketBatchSampler(
        ds.lengths, batch_size=cfg.data.batch_size, seed=seed, bucket=cfg.data.bucket,
        rank=dist_info.rank, num_replicas=dist_info.world, batch_frames=cfg.data.batch_frames,
    )
    loader = DataLoader(
        ds, batch_sampler=sampler, num_workers=workers, collate_fn=pad_collate, pin_memory=pin,
        persistent_workers=workers > 0, generator=gen, **_prefetch(workers),
    )
    return loader, sampler


def predict(
    model: nn.Module, ds: Any, *, batch_size: int, workers: int, device: torch.device, dist_info: Dist = Dist(),
    precision: str = "fp32", batch_frames: int = 0,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, scores (N, K), targets) over a whole dataset; under DDP every rank gets every row.
    Batches hold at most `batch_frames` padded frames (0: no limit; see `eval_batches`)."""
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    if isinstance(ds, IterableDataset):  # YouTube-8M: shards itself across ranks and workers
        loader = DataLoader(ds.batches(batch_size), batch_size=None, num_workers=workers, collate_fn=pad_collate,
                            **_prefetch(workers))
    else:
        batches = eval_batches(ds.lengths, batch_size=batch_size, rank=dist_info.rank, num_replicas=dist_info.world,
                               batch_frames=batch_frames)
        loader = DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=pad_collate,
                            **_prefetch(workers))
    ids, scores, targets = [], [], []
    with torch.no_grad(), autocast(device, precision):
        for batch in loader:
            logits = model(batch.x.to(device, non_blocking=True), batch.lengths)
            ids += batch.ids
            scores.append(logits.float().cpu().numpy())
            targets.append(batch.y.numpy())
    model.train(was_training)
    part = (ids, _cat(scores), _cat(targets))
    if dist_info.world > 1:
        parts: list = [None] * dist_info.world
        dist.all_gather_object(parts, part)
        ids = [i for p in parts for i in p[0]]
        part = (ids, _cat([p[1] for p in parts]), _cat([p[2] for p in parts]))
    order = np.argsort(np.asarray(part[0]), kind="stable")  # a fixed order whatever the batching
    return [part[0][i] for i in order], part[1][order], part[2][order]


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    arrays = [a for a in arrays if a.size]
    return np.concatenate(arrays) if arrays else np.zeros((0,))


def score(
    scores: np.ndarray, targets: np.ndarray, *, class_names: list[str], multi_label: bool, dataset: str
) -> dict[str, Any]:
    """Metrics of one split: YouTube-8M's for yt8m, else scikit-learn's classification metrics."""
    out: dict[str, Any] = {}
    if len(scores):
        y = torch.from_numpy(targets)
        out["loss"] = float(loss_fn(torch.from_numpy(scores), y if multi_label else y.long(), multi_label))
    if dataset == "yt8m":
        from app.metrics.yt8m import evaluate

        # The starter's metrics take probabilities: PERR counts a hit only where the score is > 0,
        # which for logits would mean p > 0.5. The ranking metrics do not change under the sigmoid.
        probs = torch.sigmoid(torch.from_numpy(scores).double()).numpy()
        return {**out, **evaluate(probs, targets)}
    from app.metrics.classification import classification_metrics

    if not len(scores):
        return {"num_clips": 0}
    return {**out, **classification_metrics(
        targets=targets, scores=scores, class_names=class_names, multi_label=multi_label
    )}


def monitored(cfg: ExperimentConfig, multi_label: bool) -> tuple[str, bool]:
    """(validation metric name, higher is better)."""
    name = cfg.train.monitor
    if name == "auto":
        name = "gap" if cfg.data.dataset == "yt8m" else "map" if multi_label else "accuracy"
    return name, name != "loss"


def weights_digest(model: nn.Module) -> str:
    """sha256 over the model's state dict (names and bytes): equal digests mean bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(getattr(model, "module", model).state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- resume state ------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "python": list(random.getstate()[1]),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(("MT19937", state["numpy"]["keys"].numpy().astype(np.uint32), state["numpy"]["pos"]))
    random.setstate((3, tuple(state["python"]), None))


def save_resume(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": RESUME_FORMAT, **state}, tmp)


def load_resume(path: Path) -> dict[str, Any]:
    """The saved state; ValueError (one line) for a file that is damaged, foreign or carries code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path}: not a readable resume state ({first}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path}: not a {RESUME_FORMAT} file")
    return state


# --- the loop ----------------------------------------------------------------------------------------


def setup_device(cfg: ExperimentConfig, dist_info: Dist) -> torch.device:
    want = cfg.train.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(dist_info.local_rank)
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class RunLog:
    """Log lines to log.txt (rank 0) and to the `logging` logger."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, msg: str) -> None:
        log.info(msg)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")


@dataclass
class TrainState:
    """The loop's progress: what the resume file carries beside the weights, optimizer, LR schedule
    and RNG states (saved as top-level keys of resume.pt, so older resume files still load)."""

    epoch: int = 0  # epochs done
    batch: int = 0  # batches done in the epoch in progress
    step: int = 0  # optimizer steps done
    best_score: float | None = None  # the monitored value of the best epoch so far
    best_epoch: int = -1  # 1-based epoch of that score
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per epoch
    sums: dict[str, float] = field(default_factory=lambda: _zero_sums())  # running sums of the epoch

    def stopped(self, tc: TrainConfig) -> bool:
        return self.epoch >= tc.epochs or bool(tc.patience and self.bad_epochs >= tc.patience)


def _zero_sums() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0, "data_seconds": 0.0}


# metrics.csv columns measured in wall-clock time: they differ between runs of the same training
TIMING_COLUMNS = ("clips_per_s", "epoch_seconds", "data_share")


@dataclass
class _Run:
    """Everything one training run works with, built once by `_setup`."""

    cfg: ExperimentConfig
    run_dir: Path
    dist_info: Dist
    progress: bool
    say: RunLog
    device: torch.device
    data: Any  # data.datasets.DataSplits
    model: nn.Module
    ddp_model: nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    l2_weights: list[nn.Parameter]
    loss_scale: float
    metric_name: str  # the validation metric early stopping watches
    higher_better: bool
    score_key: str  # what TrainState.best_score holds: val_<metric>, or train_loss without validation
    train_config: dict[str, Any]  # stored in every checkpoint
    tensorboard: Any = None  # a SummaryWriter on rank 0 when tensorboard is installed (optional)

    @property
    def tc(self) -> TrainConfig:
        return self.cfg.train

    @property
    def resume_path(self) -> Path:
        return self.run_dir / "resume.pt"

    def save_checkpoint(self, name: str, metrics: dict[str, Any]) -> None:
        save_checkpoint(
            self.run_dir / "checkpoints" / name, self.model, class_names=self.data.class_names,
            input_spec=self.data.input_spec, multi_label=self.data.multi_label,
            train_config=self.train_config, metrics=metrics, clip_seconds=self.data.clip_seconds,
        )

    def snapshot(self, st: TrainState) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(), **dataclasses.asdict(st),
        }

    def predict_scores(self, dataset: Any) -> dict[str, Any]:
        eval_bs = self.cfg.data.eval_batch_size or self.cfg.data.batch_size
        _, s, t = predict(self.model, dataset, batch_size=eval_bs, workers=self.cfg.data.workers,
                          device=self.device, dist_info=self.dist_info, precision=self.tc.precision,
                          batch_frames=self.cfg.data.batch_frames)
        return score(s, t, class_names=self.data.class_names, multi_label=self.data.multi_label,
                     dataset=self.cfg.data.dataset)


def train_run(
    cfg: ExperimentConfig,
    *,
    run_dir: str | os.PathLike,
    fold: int | None = None,
    resume: bool = False,
    dist_info: Dist = Dist(),
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train one model and score its best checkpoint on the test split; returns the test metrics."""
    run = _setup(cfg, Path(run_dir), fold, dist_info, cfg.train.progress if progress is None else progress)
    st = _restore(run) if resume else TrainState()
    loader, sampler = train_loader(run.data.train, cfg, seed=cfg.train.seed, dist_info=dist_info,
                                   pin=run.device.type == "cuda")
    while not st.stopped(run.tc):
        _run_epoch(run, st, loader, sampler)
        _end_epoch(run, st)
    if dist_info.world > 1:
        _check_ranks_agree(run)
    return _test_best(run, st)


def _setup(cfg: ExperimentConfig, run_dir: Path, fold: int | None, dist_info: Dist, progress: bool) -> _Run:
    """Run folder, seeds, device, data, model, optimizer and LR schedule."""
    fold_cfg = cfg if fold is None else cfg.replace("data", fold=fold)
    if dist_info.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(run_dir / "config.toml", "w", encoding="utf-8") as f:
            f.write(config_to_toml(fold_cfg))
    say = RunLog(run_dir / "log.txt" if dist_info.main else None)
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed, tc.deterministic)
    device = setup_device(cfg, dist_info)

    data = build_datasets(cfg.data, fold=fold, seed=tc.seed)
    model = build_model(cfg, num_classes=len(data.class_names), input_spec=data.input_spec).to(device)
    if tc.class_priors:  # a resumed run's saved weights replace these
        _start_at_class_priors(model, data.train, say)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"run {run_dir} | {cfg.model.name} {n_params:,} parameters | {data.info} | device {device} "
        f"x{dist_info.world}")
    ddp_model = model
    if dist_info.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    batch_examples = cfg.data.batch_size * dist_info.world
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, batch_examples=batch_examples, decay=tc.lr_decay,
                               every_examples=tc.lr_decay_examples),
    )
    metric_name, higher_better = monitored(cfg, data.multi_label)
    return _Run(
        cfg=cfg, run_dir=run_dir, dist_info=dist_info, progress=progress, say=say, device=device, data=data,
        model=model, ddp_model=ddp_model, optimizer=optimizer, scheduler=scheduler,
        l2_weights=classifier_weights(model) if tc.l2 > 0 else [],
        loss_scale=float(len(data.class_names)) if tc.loss == "sum_classes" and data.multi_label else 1.0,
        metric_name=metric_name, higher_better=higher_better,
        score_key=f"val_{metric_name}" if data.val is not None else "train_loss",
        train_config=fold_cfg.to_dict(), tensorboard=_tensorboard(run_dir) if dist_info.main else None,
    )


def _start_at_class_priors(model: nn.Module, train_set: Any, say: Any) -> None:
    """train.class_priors: each class of the fresh classifier starts at its frequency in the N training
    videos, kept within [1 / (N + 1), N / (N + 1)] (a class no video carries still has a finite logit)."""
    from models.common import MoE, set_class_priors

    head = getattr(model, "classifier", None)
    if not hasattr(train_set, "label_frequencies") or not isinstance(head, (nn.Linear, MoE)):
        raise ValueError("train.class_priors needs YouTube-8M training data and a model with a logistic or MoE classifier")
    freq, n = train_set.label_frequencies()
    set_class_priors(head, torch.from_numpy(freq), floor=1.0 / (n + 1))
    say(f"class priors: each class starts at its frequency in the {n:,} training videos")


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard writer to RUN/tensorboard when the optional `tensorboard` package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is not a dependency: the curves are in metrics.csv and curves.png
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _restore(run: _Run) -> TrainState:
    """The state in resume.pt, with the model, optimizer, LR schedule and RNG put back; a fresh
    state when there is none."""
    if not run.resume_path.is_file():
        run.say(f"--resume: no {run.resume_path}, starting from scratch")
        return TrainState()
    saved = load_resume(run.resume_path)
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    st = TrainState(**{f.name: saved[f.name] for f in dataclasses.fields(TrainState)})
    st.sums = {**_zero_sums(), **st.sums}  # a state saved before a sum existed starts it at 0
    run.say(f"resumed from {run.resume_path}: epoch {st.epoch}, batch {st.batch}, step {st.step}")
    return st


def _run_epoch(run: _Run, st: TrainState, loader: DataLoader, sampler: BucketBatchSampler | None) -> None:
    """Train from the state's (epoch, batch) to the end of the epoch (or steps_per_epoch)."""
    tc, main = run.tc, run.dist_info.main
    if sampler is not None:
        sampler.set_epoch(st.epoch, st.batch)
    else:
        run.data.train.set_epoch(st.epoch)
    plan = [len(parts) for parts in sampler.plan()] if sampler is not None else None  # micro-batches per step
    total = len(plan) + st.batch if plan is not None else None
    steps = iter(plan) if plan is not None else None
    if tc.steps_per_epoch and total is not None:
        total = min(total, tc.steps_per_epoch)
    run.ddp_model.train()
    bar = _bar(total, st.batch, f"epoch {st.epoch + 1}/{tc.epochs}", run.progress and main)
    t0 = time.perf_counter()
    data_iter = iter(loader)
    if sampler is None and st.batch:  # an IterableDataset: replay to the resume point
        for _ in range(st.batch):
            next(data_iter, None)
    while not (tc.steps_per_epoch and st.batch >= tc.steps_per_epoch):
        waited = time.perf_counter()
        batch = _next_step(run, data_iter, steps)
        st.sums["data_seconds"] += time.perf_counter() - waited  # the step waited for its batch
        if batch is None:
            break
        _train_on(run, st, batch)
        if bar is not None:
            elapsed = st.sums["seconds"] + time.perf_counter() - t0
            bar.set_postfix(loss=f"{st.sums['loss'] / st.sums['seen']:.3f}",
                            clips_s=f"{st.sums['seen'] * run.dist_info.world / max(elapsed, 1e-9):.1f}")
            bar.update(1)
        if tc.save_every_steps and st.step % tc.save_every_steps == 0:
            st.sums["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if main:
                save_resume(run.resume_path, run.snapshot(st))
    if bar is not None:
        bar.close()
    st.sums["seconds"] += time.perf_counter() - t0


def _next_step(run: _Run, data_iter: Any, steps: Iterator[int] | None) -> list[Batch] | None:
    """The next step's micro-batches, or None at the end of the epoch. `steps` yields how many
    micro-batches each step of the sampler's plan has; None: an IterableDataset, one batch a step
    (under DDP the epoch ends when any rank runs dry)."""
    if steps is not None:
        k = next(steps, None)
        return None if k is None else [next(data_iter) for _ in range(k)]
    batch: Batch | None = next(data_iter, None)
    if run.dist_info.world > 1:  # uneven shards of an IterableDataset
        flag = torch.tensor([0 if batch is None else 1], device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        batch = batch if int(flag) else None
    return None if batch is None else [batch]


def _train_on(run: _Run, st: TrainState, batch: list[Batch]) -> None:
    """One optimizer step on `batch` (its micro-batches), counted in the state's running sums."""
    tc = run.tc
    loss, logits, y = train_step(
        run.ddp_model, batch, run.optimizer, run.scheduler, l2=tc.l2, l2_weights=run.l2_weights,
        grad_clip=tc.grad_clip, multi_label=run.data.multi_label, device=run.device, loss_scale=run.loss_scale,
        precision=tc.precision,
    )
    n = y.shape[0]  # the step's clips, counted as train_step weighs them
    st.sums["loss"] += loss.item() * n
    st.sums["seen"] += n
    if not run.data.multi_label:
        st.sums["correct"] += float((logits.argmax(1) == y).sum())
    st.batch += 1
    st.step += 1


def _end_epoch(run: _Run, st: TrainState) -> None:
    """Validate, log, update early stopping, write checkpoints, metrics.csv and the resume state."""
    epoch = st.epoch
    row = _epoch_row(run, st)
    if run.data.val is not None:
        val = run.predict_scores(run.data.val)
        row.update({f"val_{k}": v for k, v in val.items() if isinstance(v, float)})
        current = val[run.metric_name]
        best = st.best_score
        improved = best is None or (current > best if run.higher_better else current < best)
    else:
        current = row["train_loss"]  # no validation split: every epoch "improves", the last is kept
        improved = True
    if improved:
        st.best_score, st.best_epoch, st.bad_epochs = float(current), epoch + 1, 0
    else:
        st.bad_epochs += 1
    st.history.append(row)
    st.epoch, st.batch, st.sums = epoch + 1, 0, _zero_sums()
    run.say(" | ".join(f"{k} {_fmt(v)}" for k, v in row.items()) + (" *" if improved else ""))
    if run.dist_info.main:
        if improved:
            run.save_checkpoint("best", {"epoch": epoch + 1, run.score_key: st.best_score})
        run.save_checkpoint("last", {"epoch": epoch + 1})
        write_metrics_csv(run.run_dir / "metrics.csv", st.history)
        save_resume(run.resume_path, run.snapshot(st))
    if run.tensorboard is not None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                run.tensorboard.add_scalar(key, value, epoch + 1)
        run.tensorboard.flush()
    tc = run.tc
    if st.stopped(tc) and tc.patience and st.bad_epochs >= tc.patience:
        run.say(f"early stop: no better val {run.metric_name} for {tc.patience} epochs (best epoch {st.best_epoch})")


def _epoch_row(run: _Run, st: TrainState) -> dict[str, Any]:
    """The training half of the epoch's metrics.csv row."""
    sums, multi_label = st.sums, run.data.multi_label
    return {
        "epoch": st.epoch + 1, "step": st.step, "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": sums["loss"] / max(sums["seen"], 1),
        "train_accuracy": sums["correct"] / max(sums["seen"], 1) if not multi_label else float("nan"),
        "clips_per_s": sums["seen"] * run.dist_info.world / max(sums["seconds"], 1e-9),
        "epoch_seconds": sums["seconds"],
        # the share of the epoch spent waiting for the data loader (0: reading never held training up)
        "data_share": sums["data_seconds"] / max(sums["seconds"], 1e-9),
    }


def _check_ranks_agree(run: _Run) -> None:
    """DDP: every rank ends with bit-identical weights, or the run fails."""
    world = run.dist_info.world
    digests: list = [None] * world
    dist.all_gather_object(digests, weights_digest(run.model))
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
    run.say(f"weights identical on all {world} ranks (sha256 {digests[0][:16]})")
    dist.barrier()  # rank 0 has written best.* before anyone reads it


def _test_best(run: _Run, st: TrainState) -> dict[str, Any]:
    """Score the best checkpoint on the test split; write test_metrics.json and the plots."""
    import safetensors.torch

    best = run.run_dir / "checkpoints" / "best.safetensors"
    run.say(f"best checkpoint {best}: {describe_size(best.stat().st_size)}")
    run.model.load_state_dict(safetensors.torch.load_file(str(best), device=str(run.device)))
    result: dict[str, Any] = {"best_epoch": st.best_epoch, run.score_key: st.best_score}
    if run.data.test is not None:
        result.update(run.predict_scores(run.data.test))
    if run.tensorboard is not None:
        run.tensorboard.close()
    if run.dist_info.main:
        write_json(run.run_dir / "test_metrics.json", result)
        if run.tc.plots:
            _plot_curves(run.run_dir, st.history, title=run.run_dir.name)
        if run.tc.plots and "confusion" in result:
            from app.plots import plot_confusion

            plot_confusion(run.run_dir / "confusion.png", result["confusion"], run.data.class_names,
                           title=run.run_dir.name)
        run.say("test " + " | ".join(f"{k} {_fmt(v)}" for k, v in result.items() if isinstance(v, (int, float))))
    return result


def train_experiment(
    cfg: ExperimentConfig, *, resume: bool = False, dist_info: Dist = Dist(), progress: bool | None = None
) -> dict[str, Any]:
    """One run, or every fold of a k-fold protocol in sequence (data.fold = -1) with mean +- std."""
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    k_fold = cfg.data.dataset != "yt8m" and _k_fold(cfg)
    if not k_fold:
        return train_run(cfg, run_dir=run_dir, resume=resume, dist_info=dist_info, progress=progress)
    if cfg.data.fold >= 0:
        return train_run(cfg, run_dir=run_dir / f"fold{cfg.data.fold}", fold=cfg.data.fold, resume=resume,
                         dist_info=dist_info, progress=progress)
    if dist_info.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(run_dir / "config.toml", "w", encoding="utf-8") as f:
            f.write(config_to_toml(cfg))
    for k in range(cfg.data.num_folds):  # with resume, finished folds only re-score their best checkpoint
        train_run(cfg, run_dir=run_dir / f"fold{k}", fold=k, resume=resume, dist_info=dist_info, progress=progress)
    summary = summarize_folds(run_dir, cfg.data.num_folds)
    if dist_info.main:
        write_json(run_dir / "summary.json", summary)
    return summary


def _k_fold(cfg: ExperimentConfig) -> bool:
    from data.datasets import open_cache

    return is_k_fold(cfg.data, open_cache(cfg.data))


def summarize_folds(run_dir: Path, num_folds: int) -> dict[str, Any]:
    """Mean and std (population, as numpy) over folds of every numeric test metric."""
    import json

    per_fold = []
    for k in range(num_folds):
        path = run_dir / f"fold{k}" / "test_metrics.json"
        if path.is_file():
            per_fold.append(json.loads(path.read_text(encoding="utf-8")))
    keys = sorted({k for m in per_fold for k, v in m.items() if isinstance(v, (int, float)) and k != "num_clips"})
    out: dict[str, Any] = {"folds": len(per_fold)}
    for key in keys:
        values = [float(m[key]) for m in per_fold if isinstance(m.get(key), (int, float))]
        out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    return out


# --- small helpers -----------------------------------------------------------------------------------


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(v) for k, v in r.items()})
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


def _plot_curves(run_dir: Path, rows: list[dict[str, Any]], *, title: str) -> None:
    from app.plots import plot_curves

    try:
        plot_curves(run_dir / "curves.png", rows, title=title)
    except Exception as e:  # a plot must never stop training
        log.warning("could not plot curves: %s", e)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _bar(total: int | None, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True, leave=False)
