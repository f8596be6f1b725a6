"""Train / validation / test datasets of an experiment, built from its `[data]` config.

Pixel datasets (UCF11, Hollywood2, YouTube Celebrities, a `folder` tree such as the demo set) read
the frame cache written by `python -m app preprocess`: one uint8 `(T, H, W, 3)` array per clip,
read a clip (or the window of one) at a time, so training never holds a dataset in memory. The
protocol decides the splits:

- k-fold (UCF11, Celebrities, a folder without split folders): `split = "random"` reproduces the
  authors' code exactly: clips in path order, `np.random.seed(11111986)`,
  `np.random.choice(N, N, False)` shuffle, `np.array_split(..., 5)` folds. `split = "group"` deals
  each class's source groups round robin into folds (no group in two folds; UCF11's 25 groups per
  class give 5 per fold).
- official (Hollywood2, a folder with `train/` and `test/`): the cache manifest's split field.

Early stopping uses a validation part carved from the training clips only (stratified by class;
by group under the group split), never from the test fold.

Clips longer than `max_frames` are cut to a window: a random window in training (a pure function
of (seed, epoch, clip), so any worker and a resumed run pick the same one) and the center window
(or the first frames, `eval_crop = "first"`) at evaluation. Batches come from
`BucketBatchSampler`: clips sorted by length into batches, batches shuffled, so padding stays small.

YouTube-8M plugs in as `data.yt8m.YT8MDataset` over TFRecord globs (it shards itself across
DataLoader workers and DDP ranks).
"""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from data.batch import Batch, batch_tensor
from data.config import DataConfig
from data.specs import FeatureSpec, InputSpec, PixelSpec
from preprocessing.cache import (
    CacheEntry,
    CacheError,
    CacheIndex,
    npy_path,
    read_array_into,
    read_cache,
)

log = logging.getLogger(__name__)


class DataError(Exception):
    """The data an experiment asks for is missing, stale or inconsistent (one-line message)."""


@dataclass
class DataSplits:
    """Everything the training engine needs to know about an experiment's data."""

    train: Any  # torch Dataset (map-style CachedClips, or an IterableDataset for yt8m)
    val: Any | None  # early-stopping set (None: no early stopping)
    test: Any | None  # scored at the end of training
    class_names: list[str]
    multi_label: bool  # several labels per clip: sigmoid outputs, BCE loss, MAP
    input_spec: InputSpec  # what the model takes; the checkpoint stores it
    info: dict[str, Any] = field(default_factory=dict)  # split kind, fold, clip counts (for the run log)

    @property
    def clip_seconds(self) -> float | None:
        """Median length of the training clips as the model sees them (after max_frames), in
        seconds: a classify timeline's default window. None for feature data."""
        lengths = getattr(self.train, "lengths", None)
        if not isinstance(self.input_spec, PixelSpec) or lengths is None or not len(self.train):
            return None
        return round(float(np.median(lengths)) / self.input_spec.fps, 3)


# --- pixel clips from the cache ---------------------------------------------------------------------


class CachedClips(Dataset):
    """Clips of a frame cache as `(x uint8 (T, H, W, 3), y, clip_id)` items.

    y is the class index (int64) for single-label data and a float32 multi-hot (K,) otherwise.
    Index with `i` (evaluation window) or `(i, epoch)` (training: a random window when the clip is
    longer than `max_frames`, seeded by (seed, epoch, i)).
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path,
        entries: Sequence[CacheEntry],
        class_names: Sequence[str],
        multi_label: bool,
        max_frames: int = 0,
        eval_crop: str = "center",
        seed: int = 0,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.entries = list(entries)
        self.class_index = {name: k for k, name in enumerate(class_names)}
        self.num_classes = len(class_names)
        self.multi_label = multi_label
        self.max_frames = max_frames
        self.eval_crop = eval_crop
        self.seed = seed
        self._paths: dict[str, Path] = {}  # entry.npy -> its checked path in the cache

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def lengths(self) -> list[int]:
        """Frames each item will have (after the max_frames cap): what batches are bucketed by."""
        cap = self.max_frames or math.inf
        return [int(min(e.frames, cap)) for e in self.entries]

    @property
    def ids(self) -> list[str]:
        return [e.clip_id for e in self.entries]

    def target(self, i: int) -> int | np.ndarray:
        labels = self.entries[i].labels
        if self.multi_label:
            y = np.zeros(self.num_classes, np.float32)
            y[[self.class_index[name] for name in labels]] = 1.0
            return y
        return self.class_index[labels[0]]

    def window(self, i: int, epoch: int | None) -> tuple[int, int]:
        """(start, stop) frames of item i; epoch None means evaluation."""
        T = self.entries[i].frames
        if not self.max_frames or T <= self.max_frames:
            return 0, T
        slack = T - self.max_frames
        if epoch is None:
            start = slack // 2 if self.eval_crop == "center" else 0
        else:
            start = int(np.random.default_rng([self.seed, epoch, i]).integers(0, slack + 1))
        return start, start + self.max_frames

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Any, str]:
        i, epoch = key if isinstance(key, tuple) else (key, None)
        entry = self.entries[i]
        start, stop = self.window(i, epoch)
        x = torch.empty((stop - start, *entry.shape[1:]), dtype=torch.uint8)  # (T', H, W, 3)
        read_array_into(self._path(i), entry.shape, x.numpy(), start)  # only the window is read
        y = self.target(i)
        return x, (torch.from_numpy(y) if self.multi_label else torch.tensor(y)), entry.clip_id

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> Batch:
        """The batch `pad_collate([self[k] for k in keys])`, each clip read straight into the padded
        tensor (in shared memory inside a loader worker): no per-clip arrays, no collate copy, no
        copy to send it. The DataLoader calls this for a batch of keys."""
        spans = [(i, *self.window(i, epoch)) for i, epoch in (k if isinstance(k, tuple) else (k, None) for k in keys)]
        lengths = torch.tensor([stop - start for _, start, stop in spans], dtype=torch.int64)
        shape = self.entries[spans[0][0]].shape[1:]
        x = batch_tensor((len(spans), int(lengths.max()), *shape), torch.uint8)  # (B, T, H, W, 3)
        for row, (i, start, stop) in enumerate(spans):
            read_array_into(self._path(i), self.entries[i].shape, x[row, : stop - start].numpy(), start)
            x[row, stop - start :] = 0
        ys = [self.target(i) for i, _, _ in spans]
        y = torch.from_numpy(np.stack(ys)) if self.multi_label else torch.tensor(ys, dtype=torch.int64)
        return Batch(x, lengths, y, [self.entries[i].clip_id for i, _, _ in spans])

    def _path(self, i: int) -> Path:
        """Item i's array file, checked once per clip (npy_path refuses names outside the cache)."""
        entry = self.entries[i]
        path = self._paths.get(entry.npy)
        if path is None:
            path = self._paths[entry.npy] = npy_path(self.cache_dir, entry)
        return path


class InMemoryClips(Dataset):
    """The same items held in RAM (benchmarks and tiny tests only: it loads every clip)."""

    def __init__(self, clips: CachedClips, *, epoch: int | None = None) -> None:
        self.items = [clips[(i, epoch) if epoch is not None else i] for i in range(len(clips))]
        self.lengths = [int(x.shape[0]) for x, _, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Any, str]:
        return self.items[key[0] if isinstance(key, tuple) else key]


class BucketBatchSampler(Sampler[list]):
    """Length-bucketed, shuffled batches; the order is a pure function of (seed, epoch).

    Items are shuffled, then sorted by length (stable, so equal lengths stay shuffled), cut into
    batches of similar length, and the batches are shuffled. Under DDP every rank builds the same
    list and takes every `num_replicas`-th batch (the list is padded by repeating batches so all
    ranks step equally often). `start_batch` skips batches already done (mid-epoch resume).
    Training batches hold `(index, epoch)` keys so each clip's random window follows the epoch.
    With `batch_frames` > 0 each batch is yielded as its micro-batches (`split_by_frames`), so no
    more than that many padded frames are loaded and in flight at a time; `plan()` says which
    micro-batches make up each batch (one optimizer step accumulates them).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        bucket: bool = True,
        rank: int = 0,
        num_replicas: int = 1,
        batch_frames: int = 0,
    ) -> None:
        assert batch_size >= 1 and 0 <= rank < num_replicas, "batch_size >= 1 and 0 <= rank < num_replicas"
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.batch_frames = batch_frames
        self.seed = seed
        self.shuffle = shuffle
        self.bucket = bucket
        self.rank = rank
        self.num_replicas = num_replicas
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches of this epoch, in order (indices only)."""
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            order = order[np.argsort(self.lengths[order], kind="stable")]
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        if self.num_replicas > 1 and batches:
            short = -len(batches) % self.num_replicas
            batches += batches[:short]
        return batches

    def plan(self) -> list[list[list]]:
        """This rank's batches from `start_batch` on, each as the list of its micro-batches of keys."""
        mine = self.all_batches()[self.rank :: self.num_replicas][self.start_batch :]
        keys = (lambda part: [(i, self.epoch) for i in part]) if self.shuffle else list
        return [[keys(part) for part in split_by_frames(batch, self.lengths, self.batch_frames)] for batch in mine]

    def __len__(self) -> int:
        """Micro-batches left to yield (= batches without a frame budget)."""
        return sum(len(parts) for parts in self.plan())

    def __iter__(self) -> Iterator[list]:
        for parts in self.plan():
            yield from parts


def split_by_frames(batch: Sequence[int], lengths: Sequence[int] | np.ndarray, batch_frames: int) -> list[list[int]]:
    """`batch` cut into micro-batches of at most `batch_frames` padded frames (clips x the longest):
    clips taken longest first, each part filled as far as the budget allows; a clip longer than the
    budget goes alone. 0: the batch as one part."""
    if batch_frames <= 0:
        return [list(batch)]
    parts: list[list[int]] = [[]]
    for i in sorted(batch, key=lambda i: -int(lengths[i])):  # stable: ties keep the batch's order
        part = parts[-1]
        if part and (len(part) + 1) * int(lengths[part[0]]) > batch_frames:
            parts.append(part := [])
        part.append(i)
    return parts


def eval_batches(
    lengths: Sequence[int], *, batch_size: int, rank: int = 0, num_replicas: int = 1, batch_frames: int = 0
) -> list[list[int]]:
    """Evaluation batches of similar length (sorted), this rank's share; each item exactly once.
    A batch holds at most `batch_size` clips and, with `batch_frames` > 0, at most that many padded
    frames (a clip longer than that goes alone)."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")[rank::num_replicas].tolist()
    batches: list[list[int]] = [[]]
    for i in order:  # ascending, so the newest item is the batch's longest
        batch = batches[-1]
        full = len(batch) == batch_size or (batch_frames > 0 and (len(batch) + 1) * int(lengths[i]) > batch_frames)
        if batch and full:
            batches.append(batch := [])
        batch.append(i)
    return batches if batches[0] else []


# --- splits --------------------------------------------------------------------------------------


def authors_folds(n: int, *, num_folds: int, seed: int) -> list[np.ndarray]:
    """Fold k = the positions the authors' code tests on (items in path order)."""
    shuffled = np.random.RandomState(seed).choice(range(n), n, False)
    return [shuffled[part] for part in np.array_split(np.arange(n), num_folds)]


def group_folds(labels: Sequence[str], groups: Sequence[str], *, num_folds: int, seed: int) -> list[np.ndarray]:
    """Folds with no group in two of them: each class's groups, shuffled, dealt round robin."""
    rng = np.random.RandomState(seed)
    fold_of_group: dict[str, int] = {}
    next_fold = 0
    for label in sorted(set(labels)):
        class_groups = sorted({g for g, lab in zip(groups, labels) if lab == label and g not in fold_of_group})
        for g in rng.permutation(class_groups) if class_groups else []:
            fold_of_group[str(g)] = next_fold % num_folds
            next_fold += 1
    fold = np.array([fold_of_group[g] for g in groups])
    return [np.flatnonzero(fold == k) for k in range(num_folds)]


def carve_validation(
    train_idx: np.ndarray, *, labels: Sequence[str], groups: Sequence[str] | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split training positions into (train, val): per class a `fraction` of clips (or of groups)."""
    if fraction <= 0 or len(train_idx) == 0:
        return train_idx, train_idx[:0]
    rng = np.random.RandomState(seed)
    val: list[int] = []
    for label in sorted({labels[i] for i in train_idx}):
        members = [int(i) for i in train_idx if labels[i] == label]
        if groups is not None:
            class_groups = sorted({groups[i] for i in members})
            n_val = int(round(fraction * len(class_groups)))
            if len(class_groups) > 1:
                n_val = min(max(n_val, 1), len(class_groups) - 1)
            chosen = set(rng.permutation(class_groups)[:n_val].tolist())
            val += [i for i in members if groups[i] in chosen]
        else:
            n_val = int(round(fraction * len(members)))
            if len(members) > 1:
                n_val = min(max(n_val, 1), len(members) - 1)
            val += rng.permutation(members)[:n_val].tolist()
    val_set = set(val)
    return np.array([i for i in train_idx if i not in val_set], dtype=int), np.array(sorted(val_set), dtype=int)


# --- building an experiment's datasets ----------------------------------------------------------------


def preprocess_command(cfg: DataConfig) -> str:
    """The exact command that builds the cache this config reads."""
    root = cfg.root or "<DATASET_ROOT>"
    return (
        f"python -m app preprocess --dataset {cfg.dataset} --root {root} --cache {cfg.cache} "
        f"--fps {cfg.fps:g} --size {cfg.size[0]}x{cfg.size[1]}"
    )


def open_cache(cfg: DataConfig) -> CacheIndex:
    """Read and check the cache of a pixel dataset; DataError naming the preprocess command if unusable."""
    hint = f"run `{preprocess_command(cfg)}` first"
    if not cfg.cache:
        raise DataError(f"data.cache is not set; {hint}")
    try:
        index = read_cache(cfg.cache)
    except CacheError as e:
        raise DataError(f"cache {cfg.cache} is missing or broken ({e}); {hint}") from None
    meta = index.meta
    if meta.dataset != cfg.dataset or tuple(meta.size) != tuple(cfg.size) or abs(meta.fps - cfg.fps) > 1e-6:
        raise DataError(
            f"cache {cfg.cache} holds {meta.dataset} at {meta.fps:g} fps {meta.size[0]}x{meta.size[1]}, "
            f"the config wants {cfg.dataset} at {cfg.fps:g} fps {cfg.size[0]}x{cfg.size[1]}; {hint}"
        )
    if not index.entries:
        raise DataError(f"cache {cfg.cache} holds no clips; {hint}")
    _check_sources(cfg, index, hint)
    return index


def _check_sources(cfg: DataConfig, index: CacheIndex, hint: str) -> None:
    """When the dataset root is at hand: every clip cached (or a recorded failure) and none stale."""
    root = Path(cfg.root or index.meta.root)
    if not root.is_dir():
        return  # the cache may travel without its videos
    from data.layouts import LayoutError, list_clips

    try:
        clips = list_clips(cfg.dataset, root)
    except LayoutError:
        return
    cached = index.by_id()
    failed = _failed_ids(index.cache_dir)
    missing = [c.clip_id for c in clips if c.clip_id not in cached and c.clip_id not in failed]
    if missing:
        raise DataError(
            f"cache {cfg.cache} is incomplete: {len(missing)} of {len(clips)} clips are not cached "
            f"(e.g. {missing[0]}); {hint}"
        )
    for c in clips:
        entry = cached.get(c.clip_id)
        if entry is None:
            continue
        try:
            st = c.path.stat()
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) != (entry.source_size, entry.source_mtime_ns):
            raise DataError(f"cache {cfg.cache} is stale: {c.path} changed since it was cached; {hint}")


def _failed_ids(cache_dir: Path) -> set[str]:
    import json

    ids = set()
    for path in cache_dir.glob("failures*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                ids.add(json.loads(line)["clip_id"])
    return ids


def is_k_fold(cfg: DataConfig, index: CacheIndex | None = None) -> bool:
    """True when the protocol is k-fold cross-validation (no official split in the cache)."""
    if cfg.dataset == "yt8m" or cfg.split == "official":
        return False
    if index is not None and any(e.split for e in index.entries):
        return False  # e.g. Hollywood2 or a folder tree with train/ and test/
    return cfg.dataset != "hollywood2"


def build_datasets(cfg: DataConfig, *, fold: int | None = None, seed: int = 0) -> DataSplits:
    """The datasets of one run (one fold of a k-fold protocol). `seed` seeds training windows/shuffles."""
    if cfg.dataset == "yt8m":
        return _build_yt8m(cfg, seed=seed)
    index = open_cache(cfg)
    entries = sorted((e for e in index.entries if e.labels), key=lambda e: e.path)  # the authors' path order
    if len(entries) < len(index.entries):
        log.warning("%d unlabeled clips in %s are left out", len(index.entries) - len(entries), cfg.cache)
    class_names = sorted({label for e in entries for label in e.labels})
    multi_label = cfg.dataset == "hollywood2" or any(len(e.labels) != 1 for e in entries)
    labels = [e.labels[0] for e in entries]  # first label: stratification only
    groups = [e.group or e.clip_id for e in entries]
    info: dict[str, Any] = {"dataset": cfg.dataset, "cache": cfg.cache, "num_classes": len(class_names)}

    if is_k_fold(cfg, index):
        k = cfg.fold if fold is None else fold
        if not 0 <= k < cfg.num_folds:
            raise DataError(f"fold {k} outside 0 .. {cfg.num_folds - 1}")
        if cfg.split == "group":
            if not any(e.group for e in entries):
                raise DataError(f"split = \"group\" needs source groups; the {cfg.dataset} cache has none")
            folds = group_folds(labels, groups, num_folds=cfg.num_folds, seed=cfg.split_seed)
        else:
            folds = authors_folds(len(entries), num_folds=cfg.num_folds, seed=cfg.split_seed)
        test_idx = np.sort(folds[k])
        train_idx = np.setdiff1d(np.arange(len(entries)), test_idx)
        info.update(protocol=f"{cfg.num_folds}-fold", split=cfg.split, fold=k, split_seed=cfg.split_seed)
        val_seed = cfg.split_seed + 1 + k
    else:
        splits = [e.split for e in entries]
        test_idx = np.array([i for i, s in enumerate(splits) if s == "test"], dtype=int)
        train_idx = np.array([i for i, s in enumerate(splits) if s == "train"], dtype=int)
        given_val = np.array([i for i, s in enumerate(splits) if s == "val"], dtype=int)
        if len(train_idx) == 0:
            raise DataError(f"cache {cfg.cache} has no clips in the train split")
        info.update(protocol="official", split="official")
        val_seed = cfg.split_seed + 1
    use_groups = groups if cfg.split == "group" or any(e.group for e in entries) else None
    if is_k_fold(cfg, index) or len(given_val) == 0:
        train_idx, val_idx = carve_validation(
            train_idx, labels=labels, groups=use_groups, fraction=cfg.val_fraction, seed=val_seed
        )
    else:
        val_idx = given_val

    def make(idx: np.ndarray) -> CachedClips:
        return CachedClips(
            cache_dir=index.cache_dir,
            entries=[entries[i] for i in idx],
            class_names=class_names,
            multi_label=multi_label,
            max_frames=cfg.max_frames,
            eval_crop=cfg.eval_crop,
            seed=seed,
        )

    info.update(num_train=len(train_idx), num_val=len(val_idx), num_test=len(test_idx))
    return DataSplits(
        train=make(train_idx),
        val=make(val_idx) if len(val_idx) else None,
        test=make(test_idx) if len(test_idx) else None,
        class_names=class_names,
        multi_label=multi_label,
        input_spec=PixelSpec(size=(int(cfg.size[0]), int(cfg.size[1])), fps=float(cfg.fps)),
        info=info,
    )


def _build_yt8m(cfg: DataConfig, *, seed: int) -> DataSplits:
    from data.yt8m import FEATURE_DIM, MAX_FRAMES, YT8MDataset, list_shards, read_vocabulary

    if not cfg.train_files:
        raise DataError("yt8m needs data.train_files (a glob of TFRecords)")

    def make(pattern: str, shuffle: bool, exclude: str = "") -> YT8MDataset | None:
        if not pattern:
            return None
        try:
            files: str | list[str] = pattern
            if exclude:  # the train glob minus a slice held out for tuning
                excluded = {os.path.abspath(f) for f in glob.glob(exclude)}
                files = [str(f) for f in list_shards(pattern) if os.path.abspath(f) not in excluded]
                if not files:
                    raise FileNotFoundError(f"data.exclude_files {exclude!r} leaves no file of {pattern!r}")
            return YT8MDataset(
                pattern=files,
                level=cfg.level,
                shuffle_buffer=cfg.shuffle_buffer if shuffle else 0,
                seed=seed,
                max_frames=cfg.max_frames or MAX_FRAMES,
            )
        except FileNotFoundError as e:
            raise DataError(str(e)) from None

    return DataSplits(
        train=make(cfg.train_files, True, cfg.exclude_files),
        val=make(cfg.val_files, False),
        test=make(cfg.test_files, False),
        class_names=read_vocabulary(),
        multi_label=True,
        input_spec=FeatureSpec(dims=FEATURE_DIM, level=cfg.level),
        info={"dataset": "yt8m", "protocol": "files", "train_files": cfg.train_files, "exclude_files": cfg.exclude_files},
    )
