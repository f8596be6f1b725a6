"""The one batch inference entrypoint: inputs in, one `Prediction` per input out.

    items = discover_inputs(["videos/", "clip.mp4", "shards/train*.tfrecord"])
    result = classify(items, load_checkpoint("data/models/demo_tt_gru"))  # RunSummary
    for pred in result.predictions:  # input order; Classifier(ckpt).run(items) yields as they finish
        ...

The checkpoint's input spec picks the path:
- pixel models (`{"kind": "pixels", "size": [W, H], "fps": F}`): every video is decoded by
  `preprocessing.video_to_array` -- the function the cache builder uses -- with the checkpoint's fps
  and size, in worker processes (largest files first), while the main process runs batched
  inference on what is ready;
- feature models (`{"kind": "features", ...}`): YouTube-8M TFRecord records and `.npy` arrays
  `(T, 1152)` are read in the main process (cheap); raw videos need a `FeatureExtractor`
  (`preprocessing.features`), which runs Inception + PCA (+ VGGish) on frames decoded by the workers.

Decoded clips wait in a window of `window_batches * batch_size`; a full window is sorted by length
and cut into batches, so clips of similar length share a batch and padding stays small. When a CPU
core is left over for the main process (workers < cores) or `overlap=True`, it runs one batch of
what is waiting whenever the decoders have nothing ready, so decoding and inference overlap. Once no
videos are left to hand out and a worker sits idle, everything waiting is classified on that core
while the last videos decode, so only those remain for the end. Models are padding-invariant in
eval mode, so batching changes no prediction (tests check alone vs batched).

Every input yields a `Prediction`; a file that cannot be read yields one with `error` set and the
run goes on. Library code: it logs, never prints.
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import logging
import multiprocessing
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.checkpoint import Checkpoint

log = logging.getLogger(__name__)

FEATURE_DIMS = 1152  # YouTube-8M: 1024 rgb + 128 audio
SUBMISSION_TOP = 20  # Kaggle submissions list the top 20 labels


@dataclass(frozen=True)
class InferenceOptions:
    top_k: int = 5  # labels kept per input in predictions.csv / the report
    batch_size: int = 8  # inputs per forward pass (fewer when max_batch_frames binds)
    max_batch_frames: int = 2048  # cap on padded steps per batch, B * T_max (bounds memory)
    window_batches: int = 4  # bucketing window: sort this many batches' worth of inputs by length
    workers: int = 2  # decoding processes; 0 decodes in the main process
    device: str = "auto"  # "auto" (cuda when available), "cpu" or "cuda"
    thumbnails: int = 5  # frames per thumbnail strip in the report (0: none)
    thumb_height: int = 64  # thumbnail height in pixels (never upscaled)
    max_frames: int | None = None  # keep at most this many frames of a video (None: all)
    overlap: bool | None = None  # run waiting batches while decoders work; None: when a core is spare


@dataclass(frozen=True)
class InputItem:
    """One discovered input file, before it is read."""

    path: str  # as the user will see it (relative paths stay relative)
    kind: str  # "video" | "tfrecord" | "npy" | "invalid"
    error: str | None = None  # set when kind == "invalid"


@dataclass
class Prediction:
    """The result for one input: a video, a `.npy` array, or one record of a TFRecord file."""

    path: str  # file, or "file#video_id" for a TFRecord record
    kind: str  # "video" | "tfrecord" | "npy" | "invalid"
    order: tuple[int, int]  # (input index, record index): sort key giving input order
    video_id: str | None = None  # TFRecord video id
    labels: list[tuple[str, float]] = field(default_factory=list)  # top-k (label, score), best first
    top_indices: list[int] = field(default_factory=list)  # class indices of the top-20 scores
    top_scores: list[float] = field(default_factory=list)  # their scores (Kaggle submission)
    frames: int | None = None  # time steps the model saw
    duration: float | None = None  # seconds covered by those frames (videos)
    error: str | None = None  # one line; None when the input was classified
    thumbnails: list[bytes] = field(default_factory=list)  # small JPEGs from the decoded frames

    @property
    def ok(self) -> bool:
        return self.error is None


# ----------------------------------------------------------------------------- discovering inputs

_GLOB_CHARS = "*?["
_NPY_MAGIC = b"\x93NUMPY"


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> list[InputItem]:
    """Expand files, folders (recursive, sorted, hidden entries skipped) and glob patterns.

    Every file found gets an item; the kind is sniffed from the first bytes, not the extension:
    NumPy magic -> "npy", a valid TFRecord frame header -> "tfrecord", empty or text files ->
    "invalid" with a reason, anything else -> "video" (decoding decides). A missing path or a
    pattern matching nothing also becomes an "invalid" item, so every input the user named shows up.
    """
    items: list[InputItem] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            items.append(sniff_input(path))

    for raw in inputs:
        name = os.fspath(raw)
        if os.path.isdir(name):
            for root, dirs, files in os.walk(name):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith("."):
                        add(os.path.join(root, f))
        elif os.path.exists(name):
            add(name)
        elif any(c in name for c in _GLOB_CHARS):
            matches = sorted(m for m in glob.glob(name, recursive=True) if os.path.isfile(m))
            if not matches:
                items.append(InputItem(name, "invalid", f"{name}: no files match this pattern"))
            for m in matches:
                add(m)
        else:
            items.append(InputItem(name, "invalid", f"{name}: no such file or folder"))
    return items


def sniff_input(path: str) -> InputItem:
    """Classify one file by its first bytes (cheap: reads at most 4 KiB)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # open() on a named pipe waits for a writer forever
            return InputItem(path, "invalid", f"{path}: not a regular file (a pipe, socket or device)")
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        return InputItem(path, "invalid", f"{path}: cannot read ({e.strerror or e})")
    if not head:
        return InputItem(path, "invalid", f"{path}: empty file")
    if head.startswith(_NPY_MAGIC):
        return InputItem(path, "npy")
    if _is_tfrecord_header(head):
        return InputItem(path, "tfrecord")
    if _looks_like_text(head):
        return InputItem(path, "invalid", f"{path}: not a video (text file)")
    return InputItem(path, "video")


def _masked_crc32c(data: bytes) -> int:
    import crc32c

    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _is_tfrecord_header(head: bytes) -> bool:
    """A TFRecord starts with uint64 length + uint32 masked CRC32C of those 8 bytes."""
    if len(head) < 12:
        return False
    (crc,) = struct.unpack("<I", head[8:12])
    return crc == _masked_crc32c(head[:8])


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3  # only a multi-byte character cut at the end
    return True


# ----------------------------------------------------------------------------- decoding (workers)


@dataclass
class _Decoded:
    """What a worker sends back for one video: frames (or features), thumbnails, or an error."""

    index: int
    x: np.ndarray | None = None  # uint8 (T, H, W, 3) pixels, or float32 (T, 1152) features
    audio: np.ndarray | None = None  # float32 (N,) mono waveform for the feature extractor
    thumbnails: list[bytes] = field(default_factory=list)
    error: str | None = None


def _decode_video_job(
    index: int,
    path: str,
    fps: float,
    size: tuple[int, int],
    max_frames: int | None,
    n_thumbs: int,
    thumb_height: int,
    audio_rate: int | None,
    threads: int,
) -> _Decoded:
    """Worker body: decode one video with the cache builder's function; errors become messages."""
    from preprocessing import VideoDecodeError, video_to_array

    try:
        frames = video_to_array(path, fps=fps, size=size, max_frames=max_frames, threads=threads)  # (T, H, W, 3)
        if frames.shape[0] == 0:
            return _Decoded(index, error=f"{path}: no frames decoded")
        audio = None
        if audio_rate is not None:
            from preprocessing.features import load_audio

            audio = load_audio(path, sample_rate=audio_rate)
        return _Decoded(index, x=frames, audio=audio, thumbnails=make_thumbnails(frames, n_thumbs, thumb_height))
    except VideoDecodeError as e:
        return _Decoded(index, error=_one_line(str(e)))
    except MemoryError:
        return _Decoded(index, error=f"{path}: out of memory while decoding (try --max-frames)")
    except Exception as e:  # a decoder bug must not stop the batch; the message says what it was
        log.debug("unexpected error decoding %s", path, exc_info=True)
        return _Decoded(index, error=_one_line(f"{path}: {type(e).__name__}: {e}"))


def make_thumbnails(frames: np.ndarray, n: int, height: int) -> list[bytes]:
    """JPEG bytes of `n` frames spread evenly over `frames` uint8 (T, H, W, 3) RGB."""
    import cv2

    T, H, W, _ = frames.shape
    if n <= 0 or T == 0:
        return []
    # (not np.unique: its first call imports numpy.ma, ~20 ms in every fresh worker process)
    picks = sorted(set(np.linspace(0, T - 1, num=min(n, T)).round().astype(int).tolist()))
    out = []
    for t in picks:
        img = frames[t][:, :, ::-1]  # RGB -> BGR for OpenCV
        if H > height:
            img = cv2.resize(img, (max(1, round(W * height / H)), height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 75])
        if ok:
            out.append(buf.tobytes())
    return out


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def _quiet_worker(parent_pid: int) -> None:
    """Worker initializer: end with the parent (a killed classify must not leave its workers waiting
    forever), and keep quiet: the decoder's OpenCV fallback would print FFmpeg/OpenCV warnings for
    every bad file; the error message we return already says what went wrong."""
    from preprocessing.workers import die_with_parent

    die_with_parent(parent_pid)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; decoders use no torch, so forking after torch is safe
    # (torch's DataLoader does the same on Linux). Elsewhere use the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


_IDLE = None  # yielded by the decoding stream when no video is ready yet
_SPARE = "spare"  # ... and, besides, a worker sits idle (no videos left to hand out): a core is free


def _iter_decoded(
    jobs: list[tuple[int, str]],
    job_args: dict[str, Any],
    workers: int,
    max_inflight: int,
) -> Iterator[_Decoded | None]:
    """Decode `jobs` [(index, path)] and yield results as they finish (not in order), and `_IDLE`
    whenever nothing is ready (so the consumer can run the model instead of waiting), `_SPARE` when
    moreover a worker has nothing left to do (so the consumer can use its core).

    With workers > 0 a process pool decodes up to `max_inflight` videos ahead of the consumer,
    so decoding overlaps whatever the consumer does between `next()` calls (batched inference).
    A worker that dies (a decoder crash) breaks the pool and every video in flight with it: the
    pool is rebuilt and those videos are retried one at a time, so only a video that breaks a pool
    on its own gets an error, and the others are decoded.
    """
    if workers <= 0:
        for index, path in jobs:
            yield _decode_video_job(index, path, **job_args)
        return
    import cv2  # noqa: F401  (imported once here, inherited by forked workers)

    import preprocessing  # noqa: F401
    from preprocessing.job import file_size

    # pop() from the end: largest files first (decode time grows with file size; a long video handed
    # out last would keep one worker busy while the others idle), as the cache builder does
    todo = sorted(jobs, key=lambda job: file_size(job[1]))
    suspects: list[tuple[int, str]] = []  # in flight when a pool broke: retried alone, one at a time
    paths = dict(jobs)
    while todo or suspects:
        alone = bool(suspects)
        queue, limit = (suspects, 1) if alone else (todo, max_inflight)
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_quiet_worker,
                                   initargs=(os.getpid(),))
        running: dict[cf.Future, int] = {}
        broken = False
        try:
            while (queue or running) and not broken:
                while queue and len(running) < limit:
                    index, path = queue.pop()
                    running[pool.submit(_decode_video_job, index, path, **job_args)] = index
                done, _ = cf.wait(running, timeout=0, return_when=cf.FIRST_COMPLETED)
                if not done:
                    # nothing ready: the consumer may work before we block
                    yield _SPARE if not (todo or suspects) and len(running) < workers else _IDLE
                    done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    index = running.pop(fut)
                    try:
                        yield fut.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        running[fut] = index  # handled with the others below
            if broken and alone:  # the one video in flight broke the pool by itself
                for index in running.values():
                    yield _Decoded(index, error=f"{paths[index]}: the decoder process crashed")
            elif broken:
                suspects.extend((index, paths[index]) for index in sorted(running.values(), reverse=True))
                log.warning("a decoding process died; retrying the %d videos in flight one at a time", len(suspects))
        finally:
            # no waiting for the workers to exit (~20 ms): the last batch runs meanwhile
            pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- feature inputs


def _read_npy(path: str, level: str) -> np.ndarray:
    """A `.npy` feature array: (T, 1152) frames or (1152,) one video-level vector -> float32 (T, 1152)."""
    x = np.load(path, allow_pickle=False, mmap_mode=None)
    if x.ndim == 1:
        x = x[None]  # (1, D)
    if x.ndim != 2 or x.shape[1] != FEATURE_DIMS or x.shape[0] == 0:
        raise ValueError(f"expected a (T, {FEATURE_DIMS}) array, got shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected float features, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if level == "video" and x.shape[0] > 1:
        x = x.mean(axis=0, keepdims=True)  # video-level features are the mean of frame features
    return x


def _iter_tfrecord(path: str, level: str) -> Iterator[tuple[str, np.ndarray]]:
    """(video id, float32 (T, 1152) dequantized features) per record, CRC-checked by the project's
    YouTube-8M reader. `level` is the checkpoint's ("video" or "frame"); a file of the other level
    fails with the reader's message, which says so."""
    from data.yt8m import read_yt8m

    for rec in read_yt8m(path, level=level):
        yield rec.id, rec.features


# ----------------------------------------------------------------------------- the engine


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return torch.device(device)


@dataclass
class _Ready:
    """One input ready for the model."""

    order: tuple[int, int]
    path: str
    kind: str
    x: np.ndarray  # (T, ...) one input, unpadded
    video_id: str | None = None
    thumbnails: list[bytes] = field(default_factory=list)
    duration: float | None = None


class Classifier:
    """Batched, bucketed inference with one checkpoint. Reusable across calls."""

    def __init__(
        self,
        ckpt: Checkpoint,
        *,
        options: InferenceOptions = InferenceOptions(),
        feature_extractor: Any = None,
    ) -> None:
        assert options.batch_size >= 1 and options.top_k >= 1, "batch_size and top_k must be >= 1"
        self.ckpt = ckpt
        self.options = options
        self.device = resolve_device(options.device)
        self.model = ckpt.model.to(self.device).eval()
        self.spec = ckpt.input_spec
        self.kind = self.spec.get("kind")
        assert self.kind in ("pixels", "features"), f"unknown input spec kind {self.kind!r}"
        self.feature_extractor = feature_extractor
        self.level = self.spec.get("level", "frame")

    # -- public -------------------------------------------------------------------------------

    def needs_feature_extractor(self, items: Iterable[InputItem]) -> bool:
        return self.kind == "features" and any(it.kind == "video" for it in items)

    def run(self, items: Sequence[InputItem]) -> Iterator[Prediction]:
        """Yield one Prediction per input (per record for TFRecords), in completion order."""
        pending: list[_Ready] = []
        window = self.options.batch_size * max(1, self.options.window_batches)
        overlap = self.options.overlap
        if overlap is None:  # with every core decoding, small batches would only add CPU work
            overlap = self.options.workers < (os.cpu_count() or 1)
        for ready in self._iter_ready(items):
            if ready is _SPARE and pending:
                # The last videos are decoding and a core is free: classify all that is waiting now,
                # in full batches, instead of after the slowest video (the tail of every run).
                yield from self._predict_window(pending)
                pending = []
                continue
            if ready is _IDLE or ready is _SPARE:
                # The decoders have nothing ready: with a core to spare, use the wait to run one batch
                # of what is pending. Decode-bound runs thus overlap decoding and inference;
                # model-bound runs never idle, so their window fills and is bucketed by length.
                if overlap and pending:
                    pending.sort(key=lambda r: r.x.shape[0])
                    batch, pending = pending[: self.options.batch_size], pending[self.options.batch_size :]
                    yield from self._predict_window(batch)
                continue
            if isinstance(ready, Prediction):  # an error or an unusable input
                yield ready
                continue
            pending.append(ready)
            if len(pending) >= window:
                yield from self._predict_window(pending)
                pending = []
        if pending:
            yield from self._predict_window(pending)

    # -- producing ready inputs ---------------------------------------------------------------

    def _iter_ready(self, items: Sequence[InputItem]) -> Iterator[_Ready | Prediction | None]:
        videos: list[tuple[int, str]] = []
        for i, it in enumerate(items):
            if it.kind == "invalid":
                yield Prediction(it.path, it.kind, (i, 0), error=it.error)
            elif it.kind == "video":
                if self.kind == "features" and self.feature_extractor is None:
                    yield Prediction(it.path, it.kind, (i, 0), error=f"{it.path}: {_NO_EXTRACTOR}")
                else:
                    videos.append((i, it.path))
            elif self.kind == "pixels":
                yield Prediction(
                    it.path, it.kind, (i, 0),
                    error=f"{it.path}: a {it.kind} file holds features, but this checkpoint takes video pixels",
                )
            elif it.kind == "npy":
                yield self._npy_ready(i, it.path)
            else:
                yield from self._tfrecord_ready(i, it.path)
        if videos:
            yield from self._video_ready(videos, {i: it.path for i, it in enumerate(items)})

    def _npy_ready(self, i: int, path: str) -> _Ready | Prediction:
        try:
            x = _read_npy(path, self.level)
        except (OSError, ValueError, EOFError) as e:
            return Prediction(path, "npy", (i, 0), error=_one_line(f"{path}: not a feature array ({e})"))
        return _Ready((i, 0), path, "npy", x)

    def _tfrecord_ready(self, i: int, path: str) -> Iterator[_Ready | Prediction]:
        j = 0
        try:
            for j, (vid, x) in enumerate(_iter_tfrecord(path, self.level)):
                yield _Ready((i, j), f"{path}#{vid}", "tfrecord", x, video_id=vid)
        except Exception as e:  # CRC mismatch, truncated record, bad protobuf: report, go on
            log.debug("error reading %s", path, exc_info=True)
            yield Prediction(path, "tfrecord", (i, j + 1), error=_one_line(f"{path}: {e}"))

    def _video_ready(self, videos: list[tuple[int, str]], paths: dict[int, str]) -> Iterator[_Ready | Prediction | None]:
        o = self.options
        if self.kind == "pixels":
            fps = float(self.spec["fps"])
            size = (int(self.spec["size"][0]), int(self.spec["size"][1]))
            audio_rate = None
        else:
            fps, size, audio_rate = (
                self.feature_extractor.fps, self.feature_extractor.size, self.feature_extractor.sample_rate
            )
        job_args = dict(
            fps=fps, size=size, max_frames=o.max_frames, n_thumbs=o.thumbnails,
            thumb_height=o.thumb_height, audio_rate=audio_rate,
            threads=1 if o.workers > 0 else 0,  # one decoder thread per worker process
        )
        max_inflight = max(2 * o.workers, o.workers + o.batch_size)
        for d in _iter_decoded(videos, job_args, o.workers, max_inflight):
            if d is _IDLE or d is _SPARE:
                yield d
                continue
            path = paths[d.index]
            if d.error is not None:
                yield Prediction(path, "video", (d.index, 0), error=d.error, thumbnails=d.thumbnails)
                continue
            x = d.x
            duration = round(x.shape[0] / fps, 3)
            if self.kind == "features":
                try:
                    x = self.feature_extractor.extract(x, d.audio)  # float32 (T, 1152)
                except Exception as e:
                    log.debug("feature extraction failed for %s", path, exc_info=True)
                    yield Prediction(path, "video", (d.index, 0), error=_one_line(f"{path}: feature extraction failed ({e})"))
                    continue
                if self.level == "video":
                    x = x.mean(axis=0, keepdims=True)
            yield _Ready((d.index, 0), path, "video", x, thumbnails=d.thumbnails, duration=duration)

    # -- batched inference --------------------------------------------------------------------

    def _predict_window(self, pending: list[_Ready]) -> Iterator[Prediction]:
        pending = sorted(pending, key=lambda r: r.x.shape[0])  # bucketing: similar lengths together
        batch: list[_Ready] = []
        for r in pending:
            longest = max([r.x.shape[0]] + [b.x.shape[0] for b in batch])
            if batch and (
                len(batch) >= self.options.batch_size or longest * (len(batch) + 1) > self.options.max_batch_frames
            ):
                yield from self._predict_batch(batch)
                batch = []
            batch.append(r)
        if batch:
            yield from self._predict_batch(batch)

    @torch.inference_mode()
    def _predict_batch(self, batch: list[_Ready]) -> Iterator[Prediction]:
        lengths = torch.tensor([r.x.shape[0] for r in batch], dtype=torch.int64)
        T = int(lengths.max())
        first = batch[0].x
        x = np.zeros((len(batch), T, *first.shape[1:]), dtype=first.dtype)  # (B, T, ...)
        for b, r in enumerate(batch):
            x[b, : r.x.shape[0]] = r.x
        xt = torch.from_numpy(x).to(self.device, non_blocking=True)
        logits = self.model(xt, lengths.to(self.device)).float()  # (B, K)
        scores = torch.sigmoid(logits) if self.ckpt.multi_label else torch.softmax(logits, dim=-1)
        k = min(max(self.options.top_k, SUBMISSION_TOP), scores.shape[1])
        top_s, top_i = scores.topk(k, dim=-1)
        top_s, top_i = top_s.cpu().tolist(), top_i.cpu().tolist()
        names = self.ckpt.class_names
        for b, r in enumerate(batch):
            yield Prediction(
                path=r.path,
                kind=r.kind,
                order=r.order,
                video_id=r.video_id,
                labels=[(names[c], s) for c, s in zip(top_i[b][: self.options.top_k], top_s[b][: self.options.top_k])],
                top_indices=top_i[b][:SUBMISSION_TOP],
                top_scores=top_s[b][:SUBMISSION_TOP],
                frames=int(r.x.shape[0]),
                duration=r.duration,
                thumbnails=r.thumbnails,
            )


_NO_EXTRACTOR = (
    "this checkpoint takes YouTube-8M features; to classify raw videos with it pass "
    "--feature-weights DIR (see preprocessing/features.py for the files it needs)"
)


@dataclass
class RunSummary:
    predictions: list[Prediction]  # in input order
    seconds: float  # wall time of the run
    videos_per_second: float  # classified-or-failed inputs per second

    @property
    def n_ok(self) -> int:
        return sum(p.ok for p in self.predictions)

    @property
    def n_failed(self) -> int:
        return sum(not p.ok for p in self.predictions)


def classify(
    items: Sequence[InputItem],
    ckpt: Checkpoint,
    *,
    options: InferenceOptions = InferenceOptions(),
    feature_extractor: Any = None,
    on_prediction: Callable[[Prediction], None] | None = None,
) -> RunSummary:
    """Classify `items` (from `discover_inputs`); returns all predictions in input order + timing."""
    clf = Classifier(ckpt, options=options, feature_extractor=feature_extractor)
    start = time.perf_counter()
    preds = []
    for p in clf.run(items):
        preds.append(p)
        if on_prediction is not None:
            on_prediction(p)
    seconds = time.perf_counter() - start
    preds.sort(key=lambda p: p.order)
    return RunSummary(preds, seconds, len(preds) / seconds if seconds > 0 else 0.0)


def prediction_record(p: Prediction) -> dict[str, Any]:
    """The JSON object written per input to predictions.jsonl."""
    return {
        "path": p.path,
        "id": p.video_id,
        "labels": [{"label": name, "score": round(score, 6)} for name, score in p.labels],
        "duration": p.duration,
        "frames": p.frames,
        "error": p.error,
    }


__all__ = [
    "Classifier",
    "InferenceOptions",
    "InputItem",
    "Prediction",
    "RunSummary",
    "classify",
    "discover_inputs",
    "make_thumbnails",
    "prediction_record",
    "resolve_device",
    "sniff_input",
]
