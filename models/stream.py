"""Continuous, chunked inference for recurrent pixel models: videos of any length in bounded memory,
with an optional timeline of segment scores computed in the same pass.

    stream = model.eval().stream()                   # under torch.inference_mode()
    stream.open("a.mp4", window=(240, 240))          # segments of 240 frames, one every 240 frames
    stream.feed("a.mp4", frames)                     # uint8 (k, H, W, 3) or (k, D): a decoded chunk
    done = stream.advance(16)                        # [(key, logits (K,))] of the videos that ended
    stream.close("a.mp4")                            # no more frames will come
    done += stream.advance()                         # runs what it holds; then stream.segments
    stream.add("b.mp4", all_frames)                  # open + feed + close, for a whole clip

A video fed chunk by chunk is never held whole: `feed` runs the input map on the chunk at once
(the TT map: a few floats per frame instead of tens of thousands of pixels) and drops the pixels;
the recurrence consumes the buffered gate inputs step by step and drops them. The caller bounds the
buffer by calling `advance` (see `backlog`).

Rows. Each video has one row for its whole length (its logits are `model(x[None], [T])`, exactly
what the video gives alone: rows never mix) and, with `window=(L, S)`, one row per segment: a
fresh state started at frame j*S that runs frames [j*S, min(j*S + L, T)), so a segment's logits
are those of that stretch of frames classified on its own. All rows of a video sit at the same frame,
so they share that frame's gate inputs; each step advances every row whose video has a frame
buffered, so the chunks of several videos share one batch. Finished segments go to `segments`.

The model provides the recurrent core (`input_gates`, `zero_state`, `step_weights`, `cell`,
`classifier`); see `models.tt_rnn` and `models.rnn`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Segment:
    """A finished timeline row: frames [start, stop) of video `key`, scored from a fresh state."""

    key: Any
    start: int
    stop: int
    logits: torch.Tensor  # (K,)


@dataclass
class _Video:
    key: Any
    window: tuple[int, int] | None  # (length, stride) in frames, or None: no segments
    chunks: deque = field(default_factory=deque)  # gate inputs not yet consumed, (k, G*H) each
    buffered: int = 0  # frames in `chunks`
    pos: int = 0  # the frame every row of this video steps next
    next_start: int = 0  # frame of the next segment to start
    closed: bool = False

    def take(self, k: int) -> torch.Tensor:
        """The next k frames' gate inputs (k, G*H), removed from the buffer."""
        parts, need = [], k
        while need:
            head = self.chunks[0]
            if head.shape[0] <= need:
                parts.append(self.chunks.popleft())
                need -= head.shape[0]
            else:
                parts.append(head[:need])
                self.chunks[0] = head[need:]
                need = 0
        self.buffered -= k
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass
class _Row:
    video: _Video
    start: int
    stop: int | None  # None: the whole video (ends with it)

    @property
    def whole(self) -> bool:
        return self.stop is None


class ClipStream:
    """See the module docstring. Inference only: dropout off, no autograd."""

    def __init__(self, model: Any) -> None:
        assert not model.training, "ClipStream is for inference: call model.eval() first"
        self.model = model
        # contiguous copies: the per-step matmuls with one or two rows run faster than on views
        self._weights = tuple(w.contiguous() for w in model.step_weights())
        self._videos: dict[Any, _Video] = {}
        self._rows: list[_Row] = []  # the state rows, in order
        self._state: tuple[torch.Tensor, ...] = ()  # (R, H) per state tensor
        self.segments: list[Segment] = []  # finished segments; the caller empties it

    def __len__(self) -> int:
        """Videos in the stream (open, or closed with frames still to run)."""
        return len(self._videos)

    def __contains__(self, key: Any) -> bool:
        return key in self._videos

    def backlog(self) -> int:
        """The most frames any one video has buffered (run `advance` to bring it down)."""
        return max((v.buffered for v in self._videos.values()), default=0)

    def position(self, key: Any) -> int:
        """Frames of video `key` the recurrence has run."""
        return self._videos[key].pos

    # -- feeding ----------------------------------------------------------------------------------

    def open(self, key: Any, window: tuple[int, int] | None = None) -> None:
        assert key not in self._videos, f"video {key!r} is already in the stream"
        assert window is None or (window[0] >= 1 and window[1] >= 1), f"bad window {window}"
        video = _Video(key, window)
        self._videos[key] = video
        self._add_row(_Row(video, 0, None))

    def feed(self, key: Any, frames: torch.Tensor) -> None:
        """Append a chunk of frames, uint8 (k, H, W, 3) or (k, D); the input map runs now."""
        video = self._videos[key]
        assert not video.closed, f"video {key!r} is closed"
        rows = frames.reshape(frames.shape[0], -1)  # (k, D)
        m = self.model
        assert rows.shape[1] == m.in_features, (
            f"video {key!r}: frames of shape {tuple(frames.shape)} do not fit the model ({m.in_features} values each)"
        )
        if rows.shape[0]:
            # the state's dtype: under autocast the input map may run in bfloat16 (the bulk of the
            # work), while the recurrence stays float32 (its small matmuls gain nothing from it)
            video.chunks.append(m.input_gates(rows).to(self._weights[0].dtype))  # (k, G*H)
            video.buffered += rows.shape[0]

    def close(self, key: Any) -> None:
        """No more frames for `key`: its rows end once the buffered frames are run."""
        video = self._videos[key]
        assert video.pos + video.buffered >= 1, f"video {key!r} has no frames"
        video.closed = True

    def add(self, key: Any, frames: torch.Tensor, window: tuple[int, int] | None = None) -> None:
        """A whole clip at once: open, feed, close."""
        self.open(key, window)
        self.feed(key, frames)
        self.close(key)

    def drop(self, key: Any) -> None:
        """Forget video `key` and its finished segments (a decoding error, or a restart from its
        first frame)."""
        self._keep([i for i, r in enumerate(self._rows) if r.video.key != key])
        del self._videos[key]
        self.segments = [s for s in self.segments if s.key != key]

    # -- running ----------------------------------------------------------------------------------

    def advance(self, steps: int | None = None) -> list[tuple[Any, torch.Tensor]]:
        """Run up to `steps` steps (None: as far as the buffered frames go). Returns (key, logits
        (K,)) for each video that ended; its finished segments are in `segments` by then."""
        done: list[tuple[Any, torch.Tensor]] = []
        while True:
            self._start_segments()
            done += self._end_rows()
            ready = [v for v in self._videos.values() if v.buffered]
            if not ready or steps == 0:
                return done
            k = min(self._frames_to_next_event(v) for v in ready)
            k = k if steps is None else min(k, steps)
            self._run(ready, k)
            steps = None if steps is None else steps - k

    def _run(self, ready: list[_Video], k: int) -> None:
        """k steps of the rows of the `ready` videos (each has k frames buffered)."""
        column = {id(v): j for j, v in enumerate(ready)}
        active = [i for i, r in enumerate(self._rows) if id(r.video) in column]
        gx = torch.stack([v.take(k) for v in ready], dim=1)  # (k, n_videos, G*H)
        if len(active) != len(ready):  # some video has several rows
            gx = gx[:, [column[id(self._rows[i].video)] for i in active]]  # (k, n_rows, G*H)
        everyone = len(active) == len(self._rows)
        state = self._state if everyone else tuple(s[active] for s in self._state)
        for gx_t in gx.unbind(0):
            state = self.model.cell(gx_t, state, self._weights)
        if everyone:
            self._state = state
        else:
            index = torch.tensor(active, device=gx.device)
            self._state = tuple(s.index_copy(0, index, a) for s, a in zip(self._state, state))
        for v in ready:
            v.pos += k

    def _frames_to_next_event(self, v: _Video) -> int:
        """Steps `v` can run before something happens to its rows: a segment starts or ends, or the
        buffer runs out."""
        k = v.buffered
        if v.window is not None:
            k = min(k, v.next_start - v.pos)
        stops = [r.stop for r in self._rows if r.video is v and r.stop is not None]
        return min([k] + [s - v.pos for s in stops])

    def _start_segments(self) -> None:
        for v in self._videos.values():
            if v.window is not None and v.pos == v.next_start and v.buffered:
                self._add_row(_Row(v, v.pos, v.pos + v.window[0]))
                v.next_start += v.window[1]

    def _end_rows(self) -> list[tuple[Any, torch.Tensor]]:
        """Emit the rows that reached their stop, or their video's end."""

        def ends(r: _Row) -> bool:
            v = r.video
            return r.stop == v.pos or (v.closed and not v.buffered)

        ended = [i for i, r in enumerate(self._rows) if ends(r)]
        if not ended:
            return []
        logits = self.model.classifier(self._state[0][ended])  # (e, K)
        done = []
        for j, i in enumerate(ended):
            r = self._rows[i]
            if r.whole:
                done.append((r.video.key, logits[j]))
            else:
                self.segments.append(Segment(r.video.key, r.start, r.video.pos, logits[j]))
        self._keep([i for i, r in enumerate(self._rows) if not ends(r)])
        for key, _ in done:
            del self._videos[key]
        return done

    def _add_row(self, row: _Row) -> None:
        like = self._weights[0]
        zero = self.model.zero_state(1, like)  # (1, H) each
        self._state = tuple(torch.cat([s, z]) for s, z in zip(self._state, zero)) if self._rows else zero
        self._rows.append(row)

    def _keep(self, live: list[int]) -> None:
        if len(live) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in live]
        self._state = tuple(s[live] for s in self._state)
