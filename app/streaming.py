"""Classifying decoded chunks as they come, for models with a `stream()` (the TT-RNNs, GRU, LSTM):
`models.stream.ClipStream` carries each video's state from chunk to chunk, so a video of any length
is classified in bounded memory, and the timeline's segments are scored in the same pass.

A video joins the running batch with its first chunk and leaves after its last frame: nothing is
padded and nothing waits for a batch to fill. While the decoders have nothing ready, the stream runs
`stream_chunk` steps, then looks for new chunks. With every core decoding, it runs only while it
holds a full batch of videos (fewer rows per step would only add CPU work) or when a video has more
than `MAX_BACKLOG_CHUNKS` chunks waiting, until a core is free. It holds at most about `batch_size`
closed videos plus one open video per worker, each with a bounded backlog of gate inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from app.decoding import IDLE, SPARE, DecodeEvent
from app.timeline import SegmentScores, timeline_window

if TYPE_CHECKING:
    from app.inference import Classifier, Prediction

MAX_BACKLOG_CHUNKS = 4  # per video: decoded chunks whose gate inputs may wait for the recurrence


@dataclass
class _Live:
    """A video in the stream."""

    path: str
    expected_frames: int | None
    window: tuple[int, int] | None
    total_frames: int = 0
    thumbnails: list[bytes] = field(default_factory=list)
    segments: list[SegmentScores] = field(default_factory=list)  # the timeline so far


class StreamRun:
    """One classify run through a `ClipStream`; iterate `run(events)` for the predictions."""

    def __init__(self, clf: Classifier, progress: Callable[[str, float, float | None], None] | None = None) -> None:
        self.clf = clf
        self.options = clf.options
        self.fps = clf.spec.fps
        self.stream = clf.model.stream()
        self.live: dict[int, _Live] = {}
        self.spare = clf.overlap()
        self.progress = progress
        self.max_backlog = MAX_BACKLOG_CHUNKS * self.options.chunk_frames

    def runs(self) -> bool:
        """Whether the stream should run now rather than wait for more videos."""
        enough = len(self.stream) >= (1 if self.spare else self.options.batch_size)
        return (enough or self.stream.backlog() > self.max_backlog) and self.stream.backlog() > 0

    @torch.inference_mode()
    def run(self, events: Iterator[Any]) -> Iterator[Prediction]:
        """`events`: DecodeEvents, IDLE / SPARE, and ready Predictions (errors) to pass on."""
        for ev in events:
            if ev is IDLE or ev is SPARE:
                self.spare |= ev is SPARE  # the last videos are decoding: a core is free from now on
                if self.runs():
                    yield from self.advance(self.options.stream_chunk)
            elif isinstance(ev, DecodeEvent):
                yield from self.on_event(ev)
                # Past a full batch or a long backlog, run before taking more: this bounds the stream
                # when decoding outpaces the model or gives no idle moment (--workers 0).
                while self.stream.backlog() and (
                    len(self.stream) > self.options.batch_size or self.stream.backlog() > self.max_backlog
                ):
                    yield from self.advance(self.options.stream_chunk)
            else:  # an error or an unusable input
                yield ev
        yield from self.advance(None)

    def on_event(self, ev: DecodeEvent) -> Iterator[Prediction]:
        from app.inference import Prediction

        live, key = self.live.get(ev.index), ev.index
        if ev.kind == "start":
            window = timeline_window(
                self.options, fps=self.fps, expected_frames=ev.expected_frames,
                clip_seconds=self.clf.clip_seconds, pixels=True,
            )
            self.live[key] = _Live(self.clf.paths[key], ev.expected_frames, window)
            self.stream.open(key, window)
        elif ev.kind == "chunk":
            with self.clf.autocast():
                self.stream.feed(key, torch.from_numpy(ev.frames).to(self.clf.device))
        elif ev.kind == "restart":
            self.stream.drop(key)
            self.stream.open(key, live.window)
            live.segments = []
        elif ev.kind == "end":
            live.total_frames, live.thumbnails = ev.total_frames, ev.thumbnails
            self.stream.close(key)
        else:  # "error"
            if live is not None:
                self.stream.drop(key)
                del self.live[key]
            path = self.clf.paths[key]
            yield Prediction(path, "video", (key, 0), error=ev.error, thumbnails=ev.thumbnails)

    def advance(self, steps: int | None) -> Iterator[Prediction]:
        """Run the stream `steps` steps (None: all it holds); predictions of the videos that ended."""
        done = self.stream.advance(steps)  # float32, also under --precision bf16 (models.stream)
        self._collect_segments()
        self._report_progress()
        if not done:
            return
        lives = [self.live.pop(key) for key, _ in done]
        preds = self.clf.predictions_of(
            [(key, 0) for key, _ in done], [lv.path for lv in lives], torch.stack([y for _, y in done])
        )
        for lv, p in zip(lives, preds):
            p.kind, p.frames, p.thumbnails = "video", lv.total_frames, lv.thumbnails
            p.duration = round(lv.total_frames / self.fps, 3)
            p.segments = sorted(lv.segments, key=lambda s: s.start)
            yield p

    def _collect_segments(self) -> None:
        """Turn the segments that ended into their top-k labels at once: a long video's timeline is
        kept as a few numbers per segment, not as tensors (thousands of small tensors fragment the
        heap: ~100 KB per segment, measured)."""
        if not self.stream.segments:
            return
        ended, self.stream.segments = self.stream.segments, []
        labels = self.clf.top_labels(torch.stack([s.logits for s in ended]))
        for s, top in zip(ended, labels):
            self.live[s.key].segments.append(SegmentScores(round(s.start / self.fps, 3), round(s.stop / self.fps, 3), top))

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        for key, lv in self.live.items():
            if key in self.stream:
                self.progress(lv.path, self.stream.position(key) / self.fps, (lv.expected_frames or 0) / self.fps or None)
