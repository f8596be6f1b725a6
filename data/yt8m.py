"""YouTube-8M records without TensorFlow: parse, write, and stream them as a torch dataset.

Schema (YouTube-8M v2, the starter code's `readers.py`):
- context `id` (bytes) and `labels` (int64 list, indices into the 3,862-class vocabulary);
- video level: context `mean_rgb` float[1024] and `mean_audio` float[128];
- frame level: sequence features `rgb` and `audio`, one bytes entry per frame of 1024 / 128 uint8,
  dequantized as `q * 4/255 + 4/512 - 2` (starter `utils.Dequantize` with range [-2, 2]).

Real video-level files are serialized SequenceExamples whose `feature_lists` part is present but
empty. A SequenceExample's `context` and an Example's `features` are the same protobuf field
(number 1, type Features), so every record is parsed as a SequenceExample and both message types
work at both levels (frame features of an Example are read from a context bytes list).

Items are `(x float32 (T, 1152), y float32 multi-hot (3862,), id str)`, rgb before audio, T = 1 at
video level and at most `max_frames` (300, the first frames, like the starter) at frame level.
The model, not the reader, l2-normalizes features.
"""

from __future__ import annotations

import csv
import glob
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from google.protobuf.message import DecodeError
from tfrecord import example_pb2
from torch.utils.data import IterableDataset, get_worker_info

from data.batch import Batch, batch_tensor, pad_steps
from data.tfrecord_io import TFRecordError, iter_records, write_records
from models.common import FEATURE_DIM, NUM_CLASSES
from preprocessing.features import dequantize

log = logging.getLogger(__name__)

MAX_FRAMES = 300
VIDEO_FEATURES = (("mean_rgb", 1024), ("mean_audio", 128))  # float lists, video level
FRAME_FEATURES = (("rgb", 1024), ("audio", 128))  # one uint8 bytes entry per frame
assert sum(d for _, d in VIDEO_FEATURES) == FEATURE_DIM, "the schema's features make the models' input"
LEVELS = ("video", "frame")
MESSAGES = ("sequence_example", "example")

# Bundled `Index,Name,KnowledgeGraphId` of the 3,862 classes (from the dataset's vocabulary.csv).
VOCABULARY_CSV = Path(__file__).with_name("yt8m_vocabulary.csv")



class YT8MRecord(NamedTuple):
    id: str
    labels: np.ndarray  # (L,) int64 class indices
    features: np.ndarray  # (T, 1152) float32; T = 1 at video level


def multi_hot(labels: Sequence[int] | np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    y = np.zeros(num_classes, np.float32)
    y[np.asarray(labels, np.int64)] = 1.0
    return y


def read_vocabulary(path: str | os.PathLike | None = None) -> list[str]:
    """The class names in index order (3,862 of them for the bundled file).

    Reads the bundled copy by default, or the dataset's own `vocabulary.csv` (columns `Index`, `Name`,
    optionally `KnowledgeGraphId`). 56 classes have no name in the dataset; they are named by their
    Knowledge Graph id (e.g. `/m/0dxrf`), or `class_<index>` when that is missing too.
    """
    path = Path(path) if path is not None else VOCABULARY_CSV
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    names: dict[int, str] = {}
    for row in rows:
        i = int(row["Index"])
        names[i] = row.get("Name") or row.get("KnowledgeGraphId") or f"class_{i}"
    assert sorted(names) == list(range(len(names))), f"{path}: indices are not 0..{len(names) - 1}"
    return [names[i] for i in range(len(names))]


# ---------------------------------------------------------------------------------------------
# Parsing and encoding one record


def parse_record(
    data: bytes,
    *,
    level: str,
    max_frames: int = MAX_FRAMES,
    num_classes: int = NUM_CLASSES,
    where: str = "record",
) -> YT8MRecord:
    """Parse one serialized Example or SequenceExample. `where` names it in error messages."""
    assert level in LEVELS, f"level must be one of {LEVELS}, got {level!r}"
    msg = example_pb2.SequenceExample()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise TFRecordError(f"{where}: not a valid Example/SequenceExample ({e})") from None
    ctx = msg.context.feature
    if "id" not in ctx or not ctx["id"].bytes_list.value:
        raise TFRecordError(f"{where}: no 'id' feature")
    video_id = ctx["id"].bytes_list.value[0].decode("utf-8", errors="replace")
    labels = np.asarray(ctx["labels"].int64_list.value, np.int64) if "labels" in ctx else np.zeros(0, np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise TFRecordError(f"{where}: video {video_id!r} has labels outside [0, {num_classes})")
    if level == "video":
        parts = []
        for name, dim in VIDEO_FEATURES:
            values = ctx[name].float_list.value if name in ctx else ()
            if len(values) != dim:
                hint = " (a frame-level file? use level='frame')" if name not in ctx else ""
                raise TFRecordError(f"{where}: video {video_id!r} has {len(values)} values of '{name}', expected {dim}{hint}")
            parts.append(np.asarray(values, np.float32))
        features = np.concatenate(parts)[None]  # (1, 1152)
    else:
        parts = []
        for name, dim in FRAME_FEATURES:
            if name in msg.feature_lists.feature_list:
                frames = [f.bytes_list.value[0] if f.bytes_list.value else b"" for f in msg.feature_lists.feature_list[name].feature]
            elif name in ctx:  # an Example carrying frames as one bytes list
                frames = list(ctx[name].bytes_list.value)
            else:
                raise TFRecordError(f"{where}: video {video_id!r} has no frame feature '{name}' (a video-level file? use level='video')")
            frames = frames[:max_frames]
            if any(len(b) != dim for b in frames):
                raise TFRecordError(f"{where}: video {video_id!r} has a '{name}' frame that is not {dim} bytes")
            parts.append(np.frombuffer(b"".join(frames), np.uint8).reshape(len(frames), dim))
        T = min(len(p) for p in parts)  # the starter trusts the first feature's count; we take the shorter
        features = dequantize(np.concatenate([p[:T] for p in parts], axis=1))  # (T, 1152)
    return YT8MRecord(video_id, labels, features)


def encode_record(
    *,
    video_id: str,
    labels: Sequence[int],
    rgb: np.ndarray,
    audio: np.ndarray,
    level: str,
    message: str = "sequence_example",
) -> bytes:
    """Serialize one video. Video level: float `rgb` (1024,), `audio` (128,). Frame level: uint8
    `rgb` (T, 1024), `audio` (T, 128). `message` is "sequence_example" (what the dataset ships) or
    "example"."""
    assert level in LEVELS, f"level must be one of {LEVELS}, got {level!r}"
    assert message in MESSAGES, f"message must be one of {MESSAGES}, got {message!r}"
    msg = example_pb2.SequenceExample() if message == "sequence_example" else example_pb2.Example()
    ctx = msg.context.feature if message == "sequence_example" else msg.features.feature
    ctx["id"].bytes_list.value.append(video_id.encode("utf-8"))
    ctx["labels"].int64_list.value.extend(int(i) for i in labels)
    if level == "video":
        for (name, dim), arr in zip(VIDEO_FEATURES, (rgb, audio)):
            arr = np.asarray(arr, np.float32)
            assert arr.shape == (dim,), f"{name} must have shape ({dim},), got {arr.shape}"
            ctx[name].float_list.value.extend(arr.tolist())
        if message == "sequence_example":
            msg.feature_lists.SetInParent()  # present and empty, like the real files
    else:
        for (name, dim), arr in zip(FRAME_FEATURES, (rgb, audio)):
            arr = np.asarray(arr)
            assert arr.dtype == np.uint8 and arr.ndim == 2 and arr.shape[1] == dim, (
                f"{name} must be uint8 (T, {dim}), got {arr.dtype} {arr.shape}"
            )
            if message == "sequence_example":
                fl = msg.feature_lists.feature_list[name]
                for frame in arr:
                    fl.feature.add().bytes_list.value.append(frame.tobytes())
            else:
                ctx[name].bytes_list.value.extend(frame.tobytes() for frame in arr)
    return msg.SerializeToString()


def write_yt8m(path: str | os.PathLike, videos: Iterable[dict], *, level: str, message: str = "sequence_example") -> int:
    """Write a shard of videos, each a dict with keys `id`, `labels`, `rgb`, `audio` (see
    `encode_record`). Atomic; returns the number of records."""
    return write_records(
        path,
        (
            encode_record(video_id=v["id"], labels=v["labels"], rgb=v["rgb"], audio=v["audio"], level=level, message=message)
            for v in videos
        ),
    )


# ---------------------------------------------------------------------------------------------
# Files


def list_shards(pattern: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Sorted files matching a glob pattern, or the union for a list of patterns / paths."""
    patterns = [pattern] if isinstance(pattern, str | os.PathLike) else list(pattern)
    files: set[str] = set()
    for p in patterns:
        p = os.fspath(p)
        matches = glob.glob(p) if glob.has_magic(p) else ([p] if os.path.isfile(p) else [])
        files.update(m for m in matches if os.path.isfile(m))
    if not files:
        raise FileNotFoundError(f"no YouTube-8M files match {patterns}")
    return [Path(f) for f in sorted(files)]


def read_yt8m(
    pattern: str | os.PathLike | Sequence[str | os.PathLike], *, level: str, max_frames: int = MAX_FRAMES
) -> Iterator[YT8MRecord]:
    """Every record of every matching file, in file order, CRC-checked."""
    for path in list_shards(pattern):
        for offset, data in iter_records(path):
            yield parse_record(data, level=level, max_frames=max_frames, where=f"{path}: record at byte {offset}")


def load_arrays(
    pattern: str | os.PathLike | Sequence[str | os.PathLike], *, level: str = "video"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a video-level split into memory: x float32 (N, 1152), y uint8 multi-hot (N, 3862), ids.

    For fast in-memory training (18k videos = 86 MB of features). Frame level is not supported here:
    it does not fit in memory at real sizes; stream it with `YT8MDataset`.
    """
    assert level == "video", "load_arrays reads video-level files only"
    xs, ids, labels = [], [], []
    for rec in read_yt8m(pattern, level="video"):
        xs.append(rec.features[0])
        labels.append(rec.labels)
        ids.append(rec.id)
    x = np.stack(xs) if xs else np.zeros((0, FEATURE_DIM), np.float32)
    y = np.zeros((len(xs), NUM_CLASSES), np.uint8)
    for i, lab in enumerate(labels):
        y[i, lab] = 1
    return x, y, ids


# ---------------------------------------------------------------------------------------------
# Streaming dataset


def _consumer() -> tuple[int, int]:
    """(index, count) of this reader among all DDP ranks x DataLoader workers."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world * workers


def assign_work(num_files: int, consumer: int, consumers: int) -> list[tuple[int, int, int]]:
    """This consumer's share as `(file_index, k, j)`: read records i of that file with i % k == j.

    With at least as many files as consumers, files are dealt round robin and read whole (k = 1).
    With fewer files, consumers are dealt round robin over the files and the consumers sharing a
    file split it by record index. Every record goes to exactly one consumer.
    """
    assert 0 <= consumer < consumers, f"consumer {consumer} not in [0, {consumers})"
    if num_files >= consumers:
        return [(f, 1, 0) for f in range(consumer, num_files, consumers)]
    f = consumer % num_files
    sharing = [c for c in range(consumers) if c % num_files == f]
    return [(f, len(sharing), sharing.index(consumer))]


class YT8MDataset(IterableDataset):
    """Stream YouTube-8M shards as `(x float32 (T, 1152), y float32 (3862,), id)` items.

    Work is split across DataLoader workers and DDP ranks without reading a record twice (see
    `assign_work`). With `shuffle_buffer > 0` the file order is permuted per epoch (the same way on
    every consumer) and items pass through a seeded shuffle buffer; call `set_epoch(e)` before each
    epoch (DataLoader workers see it when they are re-created, i.e. without persistent_workers).
    """

    def __init__(
        self,
        *,
        pattern: str | os.PathLike | Sequence[str | os.PathLike],
        level: str = "video",
        shuffle_buffer: int = 0,
        seed: int = 0,
        max_frames: int = MAX_FRAMES,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        assert level in LEVELS, f"level must be one of {LEVELS}, got {level!r}"
        assert shuffle_buffer >= 0 and max_frames >= 1, "shuffle_buffer >= 0 and max_frames >= 1"
        self.files = list_shards(pattern)
        self.level = level
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.max_frames = max_frames
        self.num_classes = num_classes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def num_records(self) -> int:
        """Total records over all files (reads the framing only)."""
        from data.tfrecord_io import count_records

        return sum(count_records(f) for f in self.files)

    def label_frequencies(self) -> tuple[np.ndarray, int]:
        """(K,) share of the videos that carry each class, over every file (not one consumer's part),
        and the number of videos: one pass that keeps only the counts."""
        counts, n = np.zeros(self.num_classes, np.int64), 0
        for rec in self._records(0, 1):
            counts[np.unique(rec.labels)] += 1
            n += 1
        return counts / max(n, 1), n

    def _records(self, consumer: int, consumers: int) -> Iterator[YT8MRecord]:
        files = list(self.files)
        if self.shuffle_buffer > 0:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(files))
            files = [files[i] for i in order]
        for f, k, j in assign_work(len(files), consumer, consumers):
            path = files[f]
            skip = None if k == 1 else (i % k != j for i in itertools.count())
            for offset, data in iter_records(path, skip=skip):
                yield parse_record(
                    data,
                    level=self.level,
                    max_frames=self.max_frames,
                    num_classes=self.num_classes,
                    where=f"{path}: record at byte {offset}",
                )

    def records(self) -> Iterator[YT8MRecord]:
        """This consumer's records in the epoch's order (through the shuffle buffer if any)."""
        consumer, consumers = _consumer()
        records = self._records(consumer, consumers)
        if self.shuffle_buffer > 0:
            rng = np.random.default_rng([self.seed, self.epoch, consumer])
            records = _shuffled(records, self.shuffle_buffer, rng)
        return records

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        for rec in self.records():
            y = multi_hot(rec.labels, self.num_classes)
            yield torch.from_numpy(rec.features), torch.from_numpy(y), rec.id

    def batches(self, batch_size: int) -> YT8MBatches:
        """The same stream as whole `Batch`es of `batch_size` (see `YT8MBatches`)."""
        return YT8MBatches(self, batch_size)


class YT8MBatches(IterableDataset):
    """A `YT8MDataset`'s stream cut into `Batch`es where it is read (in a loader worker): features
    go straight into one zero-padded (B, T, 1152) tensor and labels into one (B, 3862) matrix, both
    in shared memory, instead of a multi-hot array per video that is collated and copied after.
    The batches are those of `DataLoader(dataset, batch_size, collate_fn=pad_collate)`: the same
    videos in the same order, cut at the same places on every consumer. Load with `batch_size=None`.
    """

    def __init__(self, dataset: YT8MDataset, batch_size: int) -> None:
        super().__init__()
        assert batch_size >= 1, "batch_size >= 1"
        self.dataset, self.batch_size = dataset, batch_size

    def __iter__(self) -> Iterator[Batch]:
        records = self.dataset.records()
        while chunk := list(itertools.islice(records, self.batch_size)):
            yield records_batch(chunk, self.dataset.num_classes)


def records_batch(records: Sequence[YT8MRecord], num_classes: int = NUM_CLASSES) -> Batch:
    """One `Batch` of records: x zero-padded to the longest, y multi-hot, in `batch_tensor`s."""
    x, lengths = pad_steps([r.features for r in records])
    y = batch_tensor((len(records), num_classes), torch.float32).zero_()
    rows = np.repeat(np.arange(len(records)), [len(r.labels) for r in records])
    y.numpy()[rows, np.concatenate([r.labels for r in records])] = 1.0
    return Batch(x, lengths, y, [r.id for r in records])


def _shuffled(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(size))
        buf[i], item = item, buf[i]
        yield item
    for i in rng.permutation(len(buf)):
        yield buf[i]
