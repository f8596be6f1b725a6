"""The one batch inference entrypoint: inputs in, one `Prediction` per input out.

    items = discover_inputs(["videos/", "clip.mp4", "shards/train*.tfrecord"])
    result = classify(items, load_checkpoint("data/models/demo_tt_gru"))  # RunSummary
    for pred in result.predictions:  # input order; Classifier(ckpt).run(items) yields as they finish
        ...

The checkpoint's input spec picks the path:
- pixel models (`PixelSpec(size=(W, H), fps=F)`): every video is decoded by
  `preprocessing.VideoChunks` -- the decoder the cache builder uses -- with the checkpoint's fps and
  size, in worker processes (`app.decoding.DecodePool`, largest files first) that send it a chunk
  of frames at a time, while the main process runs the model on what is ready;
- feature models (`FeatureSpec(dims, level)`): YouTube-8M TFRecord records and `.npy` arrays
  `(T, 1152)` are read in the main process (cheap); raw videos need a `FeatureExtractor`
  (`preprocessing.features`), which runs Inception + PCA (+ VGGish) on frames decoded by the workers.

Batching, two ways:
- models with a `stream()` (TT-GRU, TT-LSTM, GRU, LSTM) take each video chunk by chunk and batch
  continuously (`app.streaming`, `models.stream.ClipStream`): a video joins the running batch with
  its first chunk and leaves after its last frame, its state carried from chunk to chunk, so a video
  of any length runs in bounded memory, no frame is padded and no video waits for a batch to fill.
  The timeline's segments (`app.timeline`) are rows of the same stream.
- other models (TT-MLP, feature models): whole inputs wait in a window of `window_batches * batch_size`; a full window is
  sorted by length and cut into batches, so inputs of similar length share a batch and padding stays
  small. With a core left over for the main process (workers < cores) or `overlap=True`, one batch
  of what is waiting runs whenever the decoders have nothing ready; once no videos are left to hand
  out and a worker sits idle, everything waiting is classified on that core. Their timeline segments
are cut out of the whole input and run as inputs of their own.
Models are padding-invariant in eval mode, so batching changes no prediction (tests check a video
alone vs in a batch, and continuous vs windowed batching).

Every input yields a `Prediction`; a file that cannot be read yields one with `error` set and the
run goes on. Library code: it logs, never prints.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.checkpoint import Checkpoint
from app.decoding import IDLE, SPARE, DecodeEvent, DecodePool, decoder_options
from app.inputs import InferenceOptions, InputItem, discover_inputs, make_thumbnails, one_line, sniff_input
from app.precision import autocast
from app.timeline import SegmentScores, segment_bounds, timeline_window
from data.specs import FeatureSpec
from models.common import FEATURE_DIM
from preprocessing.names import printable_name, printable_text

log = logging.getLogger(__name__)

SUBMISSION_TOP = 20  # Kaggle submissions list the top 20 labels


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
    segments: list[SegmentScores] = field(default_factory=list)  # the timeline (app.timeline), if any

    @property
    def ok(self) -> bool:
        return self.error is None


# ----------------------------------------------------------------------------- feature inputs


def _read_npy(path: str, level: str) -> np.ndarray:
    """A `.npy` feature array: (T, 1152) frames or (1152,) one video-level vector -> float32 (T, 1152)."""
    x = np.load(path, allow_pickle=False, mmap_mode=None)
    if x.ndim == 1:
        x = x[None]  # (1, D)
    if x.ndim != 2 or x.shape[1] != FEATURE_DIM or x.shape[0] == 0:
        raise ValueError(f"expected a (T, {FEATURE_DIM}) array, got shape {tuple(x.shape)}")
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
    x: np.ndarray | None  # (T, ...) one input, unpadded (None once a stream holds it)
    video_id: str | None = None
    thumbnails: list[bytes] = field(default_factory=list)
    duration: float | None = None
    frames: int = 0  # T
    window: tuple[int, int] | None = None  # timeline (length, stride) in frames, None: no timeline

    def __post_init__(self) -> None:
        self.frames = int(self.x.shape[0])


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
        self.kind = self.spec.kind  # "pixels" | "features"
        self.feature_extractor = feature_extractor
        self.level = self.spec.level if isinstance(self.spec, FeatureSpec) else "frame"
        self.clip_seconds = ckpt.clip_seconds  # the training clips' length: the timeline's window
        self.paths: dict[int, str] = {}  # input index -> path, of the current run
        self.decode_fps = self.spec.fps if self.kind == "pixels" else 1.0  # of the decoded videos
        self.progress: Callable[[str, float, float | None], None] | None = None  # long videos' progress

    # -- public -------------------------------------------------------------------------------

    def needs_feature_extractor(self, items: Iterable[InputItem]) -> bool:
        return self.kind == "features" and any(it.kind == "video" for it in items)

    def run(self, items: Sequence[InputItem], decoder: DecodePool | None = None) -> Iterator[Prediction]:
        """Yield one Prediction per input (per record for TFRecords), in completion order.
        `decoder`: the videos' decoder, already started (`app.decoding.decode_pool`); by default
        one is started when the first video is needed."""
        self.paths = {i: it.path for i, it in enumerate(items)}
        if self.options.stream and self.kind == "pixels" and callable(getattr(self.model, "stream", None)):
            from app.streaming import StreamRun

            run = StreamRun(self, self.progress)
            yield from run.run(self._iter_ready(items, busy=run.runs, decoder=decoder, events=True))
            return
        yield from self._run_windows(items, decoder)

    def _run_windows(self, items: Sequence[InputItem], decoder: DecodePool | None) -> Iterator[Prediction]:
        """Whole inputs, padded and bucketed by length (models without a stream, feature models)."""
        pending: list[_Ready] = []
        window = self.options.batch_size * max(1, self.options.window_batches)
        overlap = self.overlap()  # with every core decoding, small batches would only add CPU work
        for ready in self._iter_ready(items, decoder=decoder):
            if ready is SPARE and pending:
                # The last videos are decoding and a core is free: classify all that is waiting now,
                # in full batches, instead of after the slowest video (the tail of every run).
                yield from self._predict_window(pending)
                pending = []
                continue
            if ready is IDLE or ready is SPARE:
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

    def autocast(self):
        """The model's numeric context (`--precision`): entered around each model call only, never
        across a `yield`, so the caller's code never runs under it."""
        return autocast(self.device, self.options.precision)

    def overlap(self) -> bool:
        """Whether to run the model while the decoders work (a core is left for it)."""
        if self.options.overlap is not None:
            return self.options.overlap
        return self.options.workers < (os.cpu_count() or 1)

    # -- producing ready inputs ---------------------------------------------------------------

    def _iter_ready(
        self, items: Sequence[InputItem], busy: Callable[[], bool] | None = None, decoder: DecodePool | None = None,
        events: bool = False,
    ) -> Iterator[_Ready | Prediction | DecodeEvent | None]:
        """Inputs ready for the model, errors as Predictions, and IDLE / SPARE while the decoders
        work. Videos come whole (`_Ready`), or with `events=True` as their decoding events."""
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
                yield self._with_window(self._npy_ready(i, it.path))
            else:
                yield from map(self._with_window, self._tfrecord_ready(i, it.path))
        if videos:
            decoded = self._video_events(videos, busy, decoder)
            yield from decoded if events else self._whole_videos(decoded)

    def _npy_ready(self, i: int, path: str) -> _Ready | Prediction:
        try:
            x = _read_npy(path, self.level)
        except (OSError, ValueError, EOFError) as e:
            return Prediction(path, "npy", (i, 0), error=one_line(f"{path}: not a feature array ({e})"))
        return _Ready((i, 0), path, "npy", x)

    def _tfrecord_ready(self, i: int, path: str) -> Iterator[_Ready | Prediction]:
        j = 0
        try:
            for j, (vid, x) in enumerate(_iter_tfrecord(path, self.level)):
                yield _Ready((i, j), f"{path}#{vid}", "tfrecord", x, video_id=vid)
        except Exception as e:  # CRC mismatch, truncated record, bad protobuf: report, go on
            log.debug("error reading %s", path, exc_info=True)
            yield Prediction(path, "tfrecord", (i, j + 1), error=one_line(f"{path}: {e}"))

    def _video_events(
        self, videos: list[tuple[int, str]], busy: Callable[[], bool] | None, decoder: DecodePool | None
    ) -> Iterator[DecodeEvent | None]:
        if decoder is None:
            if self.kind == "pixels":
                fps, size, audio_rate = self.spec.fps, self.spec.size, None
            else:
                fx = self.feature_extractor
                fps, size, audio_rate = fx.fps, fx.size, fx.sample_rate
            decoder = DecodePool(videos, fps=fps, size=size, audio_rate=audio_rate, **decoder_options(self.options))
        elif decoder.jobs != videos or self.kind != "pixels" or (decoder.fps, decoder.size) != (self.spec.fps, self.spec.size):
            decoder.close()
            raise ValueError("the decoder was started for other videos or another input spec than this model's")
        decoder.busy = busy
        self.decode_fps = decoder.fps
        yield from decoder

    def _whole_videos(self, events: Iterator[DecodeEvent | None]) -> Iterator[_Ready | Prediction | None]:
        """Each video's chunks put together (models that need the whole video at once)."""
        from preprocessing.decode import VideoDecodeError, check_output_size

        parts: dict[int, list[np.ndarray]] = {}
        held: dict[int, int] = {}  # frames of each video so far
        refused: set[int] = set()  # videos over the cap: their remaining events are dropped
        for ev in events:
            if ev is IDLE or ev is SPARE:
                yield ev
            elif ev.index in refused:
                if ev.kind in ("end", "error"):
                    refused.discard(ev.index)
            elif ev.kind in ("start", "restart"):
                parts[ev.index], held[ev.index] = [], 0
            elif ev.kind == "chunk":
                parts[ev.index].append(ev.frames.copy())  # the decoder reuses the chunk's memory
                held[ev.index] += len(ev.frames)
                try:  # video_to_array's cap, for models that need the whole video
                    check_output_size(self.paths[ev.index], held[ev.index], (ev.frames.shape[2], ev.frames.shape[1]))
                except VideoDecodeError as e:
                    del parts[ev.index], held[ev.index]
                    refused.add(ev.index)
                    yield Prediction(self.paths[ev.index], "video", (ev.index, 0), error=one_line(str(e)))
            elif ev.kind == "error":
                parts.pop(ev.index, None)
                held.pop(ev.index, None)
                yield Prediction(self.paths[ev.index], "video", (ev.index, 0), error=ev.error, thumbnails=ev.thumbnails)
            else:  # "end"
                held.pop(ev.index)
                x = np.concatenate(parts.pop(ev.index))
                yield self._with_window(self._video_input(ev, x))

    def _video_input(self, ev: DecodeEvent, x: np.ndarray) -> _Ready | Prediction:
        """A decoded video as the model's input: its pixels, or features extracted from them."""
        path = self.paths[ev.index]
        duration = round(x.shape[0] / self.decode_fps, 3)
        if self.kind == "features":
            try:
                x = self.feature_extractor.extract(x, ev.audio)  # float32 (T, 1152)
            except Exception as e:
                log.debug("feature extraction failed for %s", path, exc_info=True)
                return Prediction(path, "video", (ev.index, 0), error=one_line(f"{path}: feature extraction failed ({e})"))
            if self.level == "video":
                x = x.mean(axis=0, keepdims=True)
        return _Ready((ev.index, 0), path, "video", x, thumbnails=ev.thumbnails, duration=duration)

    def _with_window(self, ready: _Ready | Prediction) -> _Ready | Prediction:
        """Decide the timeline of a whole input (its length is known)."""
        if isinstance(ready, _Ready) and not (self.kind == "features" and self.level == "video"):
            fps = self.spec.fps if self.kind == "pixels" else 1.0  # YouTube-8M frame features: one per second
            ready.window = timeline_window(
                self.options, fps=fps, expected_frames=ready.frames, clip_seconds=self.clip_seconds,
                pixels=self.kind == "pixels",
            )
        return ready

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
        logits = self._logits([r.x for r in batch])
        preds = self.predictions_of([r.order for r in batch], [r.path for r in batch], logits)
        for r, p in zip(batch, preds):
            p.kind, p.video_id, p.frames, p.duration, p.thumbnails = r.kind, r.video_id, r.frames, r.duration, r.thumbnails
            if r.window is not None:
                p.segments = self._segment_scores(r.x, r.window)
            yield p

    def _logits(self, xs: list[np.ndarray]) -> torch.Tensor:
        """Logits (B, K) of inputs of any lengths, padded into one batch."""
        lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
        x = np.zeros((len(xs), int(lengths.max()), *xs[0].shape[1:]), dtype=xs[0].dtype)  # (B, T, ...)
        for b, one in enumerate(xs):
            x[b, : one.shape[0]] = one
        xt = torch.from_numpy(x).to(self.device, non_blocking=True)
        with self.autocast():
            return self.model(xt, lengths.to(self.device))

    def _segment_scores(self, x: np.ndarray, window: tuple[int, int]) -> list[SegmentScores]:
        """The timeline of one whole input: each segment cut out and run on its own, in batches."""
        bounds = segment_bounds(x.shape[0], window)
        fps = self.spec.fps if self.kind == "pixels" else 1.0
        out = []
        for s in range(0, len(bounds), self.options.batch_size):
            part = bounds[s : s + self.options.batch_size]
            labels = self.top_labels(self._logits([x[a:b] for a, b in part]))
            out += [SegmentScores(round(a / fps, 3), round(b / fps, 3), top) for (a, b), top in zip(part, labels)]
        return out

    def _scores(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return torch.sigmoid(logits) if self.ckpt.multi_label else torch.softmax(logits, dim=-1)

    def top_labels(self, logits: torch.Tensor) -> list[list[tuple[str, float]]]:
        """The top-k (label, score) of each row of logits (B, K)."""
        top_s, top_i = self._scores(logits).topk(min(self.options.top_k, logits.shape[1]), dim=-1)
        names = self.ckpt.class_names
        return [[(names[c], v) for c, v in zip(i, s)] for i, s in zip(top_i.cpu().tolist(), top_s.cpu().tolist())]

    def predictions_of(self, orders: list[tuple[int, int]], paths: list[str], logits: torch.Tensor) -> list[Prediction]:
        """Predictions (labels and the Kaggle top 20) of inputs from their logits (B, K)."""
        scores = self._scores(logits)
        k = min(max(self.options.top_k, SUBMISSION_TOP), scores.shape[1])
        top_s, top_i = scores.topk(k, dim=-1)
        top_s, top_i = top_s.cpu().tolist(), top_i.cpu().tolist()
        names = self.ckpt.class_names
        return [
            Prediction(
                path=path, kind="video", order=order,
                labels=[(names[c], v) for c, v in zip(top_i[b][: self.options.top_k], top_s[b][: self.options.top_k])],
                top_indices=top_i[b][:SUBMISSION_TOP], top_scores=top_s[b][:SUBMISSION_TOP],
            )
            for b, (order, path) in enumerate(zip(orders, paths))
        ]


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
    decoder: DecodePool | None = None,
    start: float | None = None,
    on_progress: Callable[[str, float, float | None], None] | None = None,
) -> RunSummary:
    """Classify `items` (from `discover_inputs`); returns all predictions in input order + timing.
    `decoder`: the videos' decoder if already started (see `Classifier.run`); `start`: the
    `time.perf_counter()` the run's time counts from (default: now); `on_progress(path, seconds
    done, seconds expected or None)`: called as the stream runs the videos it holds."""
    clf = Classifier(ckpt, options=options, feature_extractor=feature_extractor)
    clf.progress = on_progress
    start = time.perf_counter() if start is None else start
    preds = []
    try:
        for p in clf.run(items, decoder):
            preds.append(p)
            if on_prediction is not None:
                on_prediction(p)
    finally:
        if decoder is not None:  # also when no video reached it (all refused) or the run failed
            decoder.close()
    seconds = time.perf_counter() - start
    preds.sort(key=lambda p: p.order)
    return RunSummary(preds, seconds, len(preds) / seconds if seconds > 0 else 0.0)


def json_score(score: float) -> float | None:
    """A score for a JSON file: 6 decimals; null for NaN or infinity, which JSON has no number for."""
    return round(score, 6) if math.isfinite(score) else None


def prediction_record(p: Prediction) -> dict[str, Any]:
    """The JSON object written per input to predictions.jsonl."""
    return {
        "path": printable_name(p.path),  # the exact bytes: preprocessing.names.name_bytes(path)
        "id": None if p.video_id is None else printable_text(p.video_id),
        "labels": [{"label": printable_text(name), "score": json_score(score)} for name, score in p.labels],
        "duration": p.duration,
        "frames": p.frames,
        "error": None if p.error is None else printable_text(p.error, p.path),
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
