"""The `[data]` section of an experiment config: what to read and how to batch it.

It lives here, below the app, because the datasets are built from it (`data.datasets`); the app's
`ExperimentConfig` (app/config.py) holds one beside the model and training sections.
"""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("ucf11", "hollywood2", "celebrities", "folder", "yt8m")
SPLITS = ("random", "group", "official")


@dataclass(frozen=True)
class DataConfig:
    dataset: str  # one of DATASETS; "folder" is a `<split>/<class>/*.mp4` tree such as the demo set
    cache: str = ""  # cache folder written by `python -m app preprocess` (pixel datasets)
    root: str = ""  # raw videos; only used to print the exact preprocess command when the cache is missing
    fps: float = 24.0  # frames per second the cache was sampled at (checked against the cache manifest)
    size: tuple[int, int] = (160, 120)  # frame (W, H) of the cache (checked against the manifest)
    split: str = "random"  # "random" (authors' shuffled k-fold), "group" (no source group in two folds), "official"
    fold: int = -1  # test fold for k-fold datasets; -1 runs all folds in sequence and reports mean +- std
    num_folds: int = 5  # k of the k-fold protocol (UCF11, Celebrities)
    split_seed: int = 11111986  # seed of the fold assignment (the authors' code uses 11111986)
    val_fraction: float = 0.1  # share of the training clips held out for early stopping (never the test fold)
    max_frames: int = 0  # cap on frames per clip (0: no cap); random window in training, see eval_crop
    eval_crop: str = "center"  # window of a capped clip at evaluation: "center" or "first"
    batch_size: int = 16  # clips per optimizer step (per process under torchrun)
    batch_frames: int = 0  # most padded frames (clips x longest) loaded at once: a batch above it is
    # accumulated over micro-batches (the same step), evaluation batches are cut at it (0: no limit)
    eval_batch_size: int = 0  # clips per evaluation batch (0: same as batch_size)
    workers: int = 2  # DataLoader worker processes (0: load in the main process)
    bucket: bool = True  # length-bucketed batches: group clips of similar length, shuffle the batches
    train_files: str = ""  # yt8m: glob of training TFRecords
    exclude_files: str = ""  # yt8m: glob of TFRecords left out of train_files (e.g. a tuning slice scored as val_files)
    val_files: str = ""  # yt8m: glob of validation TFRecords used for early stopping
    test_files: str = ""  # yt8m: glob of TFRecords scored at the end (and by `evaluate --split test`)
    level: str = "video"  # yt8m: "video" (mean features, T=1) or "frame" (up to 300 frames)
    shuffle_buffer: int = 1024  # yt8m: records in the shuffle buffer of the streaming reader
