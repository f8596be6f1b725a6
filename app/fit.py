"""`fit`: from a folder of class subfolders to a trained, evaluated TT-GRU, every choice made by a
written rule, printed, and saved as the run's TOML (so `train --config` on it repeats the run).

    plan = plan_fit(Path("my_videos"), out=Path("runs/mine"))   # FitPlan: choices + reasons
    cfg = plan.config                                             # an ExperimentConfig

The rules (docs/ARCHITECTURE.md points here; the README's "Your own videos" section sums them up):

- Layout: `DIR/<class>/*` (fit holds out a test fold, 1 of 5, by source group when file names carry
  groups) or `DIR/train/<class>/*` + `DIR/test/<class>/*` (the folders' own split). A class is a
  folder with at least one video; fit needs two classes and, when it splits itself, two videos per
  class (one to train on, one to test on).
- Frame size: the paper's 160x120, but never larger than the videos (no upscaling): scaled down,
  4:3 kept, to fit the smallest of the probed videos (up to 16 probed).
- Model: TT-GRU with input modes that follow the pixel layout, each pair balanced: the rows split in
  two (`balanced_modes(H, 2)`), the columns x RGB in two (`balanced_modes(W * 3, 2)`); 32x24 ->
  (4, 6, 8, 12), 160x120 -> (10, 12, 20, 24). On the demo set this reached test accuracy 0.990
  where the four most even factors of H*W*3, (6, 6, 8, 8), reached 0.886 (docs/RESULTS.md, "fit").
  128 hidden units in modes `balanced_modes(128)`, TT ranks 1,4,4,4,1 (the paper's); dropout 0.25
  (the paper's) below 2,000 training clips, none above (on a large set it only slowed learning).
- Schedule: about 12,000 optimizer steps of 16 clips: epochs = ceil(12000 / steps per epoch), within
  3..60; Adam lr 3e-3 halved every third of the epochs; early stopping after a quarter of the
  epochs (at least 2) without a better validation accuracy; validation = 10% of the training clips
  (at most 1,000), by group when there are groups.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from app.config import ExperimentConfig, ModelConfig, TrainConfig
from app.errors import UsageError
from data.config import DataConfig
from data.layouts import SPLIT_FOLDERS, VIDEO_EXTENSIONS, ClipInfo, LayoutError, list_clips
from preprocessing.names import printable_name

PAPER_SIZE = (160, 120)
HIDDEN = 128
RANKS = (1, 4, 4, 4, 1)
TARGET_STEPS = 12000
BATCH = 16
BATCH_BYTES = 512 << 20  # pixels loaded at once: a batch of longer clips is one step over micro-batches
MAX_PROBED = 16


@dataclass(frozen=True)
class FitPlan:
    """What fit will do, and why (one line per choice)."""

    config: ExperimentConfig
    classes: tuple[str, ...]
    clips: tuple[ClipInfo, ...]
    reasons: dict[str, str] = field(default_factory=dict)  # choice -> the rule that gave it
    notes: tuple[str, ...] = ()  # things the user should know (ignored folders, files)


def plan_fit(
    root: Path, *, out: Path, cache: Path | None = None, size: tuple[int, int] | None = None,
    fps: float = 24.0, hidden: int = HIDDEN, epochs: int | None = None, seed: int = 0,
    precision: str = "fp32",
) -> FitPlan:
    """Inspect `root` and choose everything; UsageError (one line) when the folder cannot be fitted.
    Paths are made absolute, so the saved config names the same folders from anywhere."""
    root, out = Path(os.path.abspath(root)), Path(os.path.abspath(out))
    cache = Path(os.path.abspath(cache)) if cache is not None else out / "cache"
    for what, path in (("video folder", root), ("--out", out), ("--cache", cache)):
        if any("\udc80" <= c <= "\udcff" for c in os.fsdecode(path)):
            raise UsageError(f"the {what} path {printable_name(path)} is not valid UTF-8, which the run's "
                             "TOML config cannot hold; rename it, or link it under a UTF-8 name")
    clips, notes = _labelled_clips(root)
    classes = tuple(sorted({c.labels[0] for c in clips}))
    splits_given = any(c.split for c in clips)
    _check_classes(clips, classes, splits_given)
    reasons: dict[str, str] = {}
    if size is None:
        size, reasons["size"] = choose_size([c.path for c in clips])
    else:
        reasons["size"] = "--size"
    n_train = sum(1 for c in clips if c.split == "train") if splits_given else round(0.8 * len(clips))
    grouped = any(c.group for c in clips)
    val_fraction = min(0.1, 1000 / max(n_train, 1))
    steps_per_epoch = max(1, math.ceil(n_train * (1 - val_fraction) / BATCH))
    if epochs is None:
        epochs = min(60, max(3, math.ceil(TARGET_STEPS / steps_per_epoch)))
        reasons["epochs"] = f"about {TARGET_STEPS} steps of {BATCH} clips: {steps_per_epoch} steps per epoch"
    else:
        reasons["epochs"] = "--epochs"
    dropout = 0.25 if n_train < 2000 else 0.0
    reasons["dropout"] = f"{n_train} training clips ({'<' if dropout else '>='} 2,000)"
    how = "by source group (file names carry groups)" if grouped else "at random"
    reasons["split"] = "the folder's train/ and test/" if splits_given else f"test = fold 0 of 5, {how}"
    from models.tt import balanced_modes

    W, H = size  # (W, H)
    data = DataConfig(
        dataset="folder", cache=str(cache), root=str(root), fps=float(fps), size=(W, H),
        split="official" if splits_given else ("group" if grouped else "random"),
        fold=-1 if splits_given else 0, val_fraction=round(val_fraction, 4), batch_size=BATCH,
        batch_frames=max(1, BATCH_BYTES // (W * H * 3)), workers=0 if W * H <= 64 * 48 else 2,
    )
    model = ModelConfig("tt_gru", {
        "in_modes": pixel_modes(W, H), "hidden_modes": balanced_modes(hidden), "ranks": RANKS,
        "dropout": dropout, "recurrent_dropout": dropout,
    })
    decay_every = max(1, math.ceil(epochs / 3))
    train = TrainConfig(
        name=out.name, out_dir=str(out.parent), epochs=epochs, lr=3e-3, lr_decay=0.5,
        lr_decay_examples=decay_every * steps_per_epoch * BATCH, l2=0.01, grad_clip=1.0,
        patience=max(2, epochs // 4), seed=seed, save_every_steps=500, precision=precision,
    )
    return FitPlan(ExperimentConfig(data, model, train), classes, tuple(clips), reasons, tuple(notes))


def pixel_modes(width: int, height: int) -> tuple[int, ...]:
    """TT input modes of a W x H RGB frame (row-major, (H, W, 3)): two balanced factors of the rows,
    then two of the columns x RGB, so that each TT core sees a block of the image."""
    from models.tt import balanced_modes

    return (*balanced_modes(height, 2), *balanced_modes(width * 3, 2))


def _labelled_clips(root: Path) -> tuple[list[ClipInfo], list[str]]:
    """The videos in class folders, and notes on what was left out."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    try:
        clips = list_clips("folder", root)
    except LayoutError:
        clips = []
    notes = []
    loose = [c for c in clips if not c.labels]
    if loose:
        notes.append(f"{len(loose)} video(s) not in a class folder are left out (e.g. {loose[0].clip_id})")
    clips = [c for c in clips if c.labels]
    if not clips:
        raise UsageError(
            f"no videos in class folders under {root} (expected {root}/<class>/*.mp4, or "
            f"{root}/train/<class>/ and {root}/test/<class>/)"
        )
    video_dirs = {c.path.parent for c in clips}
    for folder in _class_folders(root):
        if not any(d == folder or folder in d.parents for d in video_dirs):
            notes.append(f"{printable_name(folder)} holds no videos: not a class")
    others = sum(1 for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in VIDEO_EXTENSIONS
                 and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if others:
        notes.append(f"{others} file(s) without a video extension are left out")
    return clips, notes


def _class_folders(root: Path) -> list[Path]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.name.lower() in SPLIT_FOLDERS:
            out += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            out.append(d)
    return out


def _check_classes(clips: list[ClipInfo], classes: tuple[str, ...], splits_given: bool) -> None:
    if len(classes) < 2:
        raise UsageError(f"fit needs at least two classes (folders of videos); found {len(classes)}: "
                         f"{', '.join(classes)}")
    if splits_given:
        trained = {c.labels[0] for c in clips if c.split == "train"}
        missing = [k for k in classes if k not in trained]
        if missing:
            raise UsageError(f"class {missing[0]} has no video in train/: fit cannot learn it")
        if not any(c.split == "test" for c in clips):
            raise UsageError("the folder has train/ but no test/ videos: add DIR/test/<class>/ videos, "
                             "or put the class folders directly in DIR for fit to hold out a test fold")
        return
    counts = Counter(c.labels[0] for c in clips)
    few = sorted(k for k, n in counts.items() if n < 2)
    if few:
        raise UsageError(f"class {few[0]} has {counts[few[0]]} video; fit needs at least 2 per class "
                         "(one to train on, one to test on): add videos or remove the folder")


def choose_size(paths: list[Path], *, paper: tuple[int, int] = PAPER_SIZE) -> tuple[tuple[int, int], str]:
    """The paper's size, scaled down (4:3, even numbers) to fit the smallest of up to 16 probed videos."""
    from preprocessing.decode import VideoDecodeError, probe

    step = max(1, len(paths) // MAX_PROBED)
    sizes = []
    for p in paths[::step][:MAX_PROBED]:
        try:
            sizes.append(probe(p).display_size)
        except (VideoDecodeError, OSError):
            continue
    if not sizes:
        return paper, "the paper's (no video could be probed)"
    w, h = min(sizes, key=lambda s: s[0] * s[1])
    scale = min(1.0, w / paper[0], h / paper[1])
    size = (max(2, 2 * int(paper[0] * scale / 2)), max(2, 2 * int(paper[1] * scale / 2)))
    if size == paper:
        return size, f"the paper's (the smallest probed video is {w}x{h})"
    return size, f"the paper's 160x120 scaled to the smallest probed video, {w}x{h} (no upscaling)"

