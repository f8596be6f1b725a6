"""Decoding `classify`'s videos in worker processes, streamed chunk by chunk. No torch here: the
command line starts the decoders before it imports torch and loads the checkpoint.

    pool = DecodePool([(0, "a.mp4"), (1, "b.mkv")], fps=24.0, size=(160, 120), workers=2)
    for ev in pool:   # DecodeEvent as they come (a video's own events in order), or IDLE / SPARE
        ...

Each video becomes a run of events: "start" (with the header's estimate of its frame count), then
"chunk"s of at most `chunk_frames` uint8 (k, H, W, 3) frames, then "end" (thumbnails, the frame
count, the audio when asked) or "error" (one line). A "restart" says: forget this video's frames so
far, they start again from frame 0 (the decoder found its timestamps unusable, or PyAV failed and
OpenCV took over: `preprocessing.VideoChunks`). Concatenating a video's chunks after its last
restart gives exactly `preprocessing.video_to_array` of the file; nothing here holds a whole video.

Each worker is a process with two pipes, tasks in and events out, and (where workers are forked) a
ring of shared-memory slots for the frames: a chunk is written once by the worker and read in place
by the main process, which frees the slot when it asks for the next event. The rings hold
`AHEAD_BYTES` of frames in all: the most the workers decode ahead of their consumer, so memory stays
bounded whatever the videos' lengths. A worker is handed its next video when it is done with one (`ahead`
videos may wait behind it; none by default, so that the largest videos spread over the workers).
Since the main process assigns every video to one worker, and a pipe keeps what was written before
its writer died, a worker that dies (an FFmpeg segfault, the OOM killer) costs exactly the video it
was decoding: that video gets an error, the one waiting is handed out again, and a fresh worker
takes its place. Workers end with their parent (`preprocessing.workers.die_with_parent`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection as mpc
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.inputs import InferenceOptions, InputItem, one_line
from data.specs import InputSpec, PixelSpec

log = logging.getLogger(__name__)

IDLE = None  # yielded by DecodePool when no event is ready yet
SPARE = "spare"  # ... and, besides, a worker has nothing left to do (a core is free)
CRASHED = "the decoder process crashed"


@dataclass
class DecodeEvent:
    """One step of one video's decoding (see the module docstring)."""

    kind: str  # "start" | "chunk" | "restart" | "end" | "error"
    index: int  # the video's job index
    frames: np.ndarray | None = None  # "chunk": uint8 (k, H, W, 3); valid until the next event (copy to keep)
    expected_frames: int | None = None  # "start": the header's estimate (None: unknown)
    total_frames: int = 0  # "end": frames decoded
    thumbnails: list[bytes] = field(default_factory=list)  # "end", "error": small JPEGs
    audio: np.ndarray | None = None  # "end", when asked: float32 (N,) mono waveform
    error: str | None = None  # "error": one line naming the file
    slot: int | None = None  # in transit: the shared-memory slot holding the chunk (`_Ring`)
    shape: tuple[int, ...] | None = None  # ... and its shape


# ----------------------------------------------------------------------------- one video's events


def video_events(
    index: int, path: str, *, fps: float, size: tuple[int, int], max_frames: int | None, n_thumbs: int,
    thumb_height: int, audio_rate: int | None, threads: int, chunk_frames: int,
) -> Iterator[DecodeEvent]:
    """Decode one video into its events; any failure becomes one "error" event naming the file."""
    from preprocessing import RESTART, VideoChunks, VideoDecodeError

    thumbs = ThumbnailPicker(n_thumbs, thumb_height)
    try:
        chunks = VideoChunks(path, fps=fps, size=size, max_frames=max_frames, threads=threads, chunk_frames=chunk_frames)
        total = 0
        for n, chunk in enumerate(chunks):
            if n == 0:  # the header's length is known once the file is open
                yield DecodeEvent("start", index, expected_frames=chunks.expected_frames)
            if chunk is RESTART:
                thumbs, total = ThumbnailPicker(n_thumbs, thumb_height), 0
                yield DecodeEvent("restart", index)
                continue
            thumbs.add(chunk, total)
            total += chunk.shape[0]
            yield DecodeEvent("chunk", index, frames=chunk)
        if total == 0:
            yield DecodeEvent("error", index, error=f"{path}: no frames decoded")
            return
        audio = None
        if audio_rate is not None:
            from preprocessing.features import load_audio

            audio = load_audio(path, sample_rate=audio_rate)
        yield DecodeEvent("end", index, total_frames=total, thumbnails=thumbs.jpegs(total), audio=audio)
    except VideoDecodeError as e:
        yield DecodeEvent("error", index, error=one_line(str(e)), thumbnails=thumbs.jpegs())
    except MemoryError:
        yield DecodeEvent("error", index, error=f"{path}: out of memory while decoding (try --max-frames)")
    except Exception as e:  # a decoder bug must not stop the batch; the message says what it was
        log.debug("unexpected error decoding %s", path, exc_info=True)
        yield DecodeEvent("error", index, error=one_line(f"{path}: {type(e).__name__}: {e}"))


class ThumbnailPicker:
    """Up to `n` frames spread over a video of unknown length, in bounded memory: it keeps the
    frames at multiples of a stride, doubling the stride (and dropping every other kept frame)
    whenever more than 2n are kept; at the end it picks the kept frames nearest to n evenly spaced
    points. Frames are scaled to `height` (never up) when kept."""

    def __init__(self, n: int, height: int) -> None:
        self.n, self.height, self.stride = n, height, 1
        self.kept: list[tuple[int, np.ndarray]] = []  # (frame index, BGR image)

    def add(self, chunk: np.ndarray, start: int) -> None:
        """Offer frames start .. start + len(chunk) - 1, uint8 (k, H, W, 3) RGB."""
        if self.n <= 0:
            return
        t = -(-start // self.stride) * self.stride  # the first multiple of the stride in the chunk
        while t < start + chunk.shape[0]:
            self.kept.append((t, self._small(chunk[t - start])))
            if len(self.kept) > 2 * self.n:
                self.stride *= 2
                self.kept = [(i, img) for i, img in self.kept if i % self.stride == 0]
            t = -(-(t + 1) // self.stride) * self.stride

    def _small(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        img = frame[:, :, ::-1]  # RGB -> BGR for OpenCV
        H, W = img.shape[:2]
        if H > self.height:
            img = cv2.resize(img, (max(1, round(W * self.height / H)), self.height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    def jpegs(self, total: int | None = None) -> list[bytes]:
        """JPEG bytes of the picks; `total`: the video's frame count (default: up to the last kept)."""
        import cv2

        if not self.kept:
            return []
        last = (total or self.kept[-1][0] + 1) - 1
        targets = np.linspace(0, last, num=min(self.n, len(self.kept)))
        picks = sorted({min(range(len(self.kept)), key=lambda j: abs(self.kept[j][0] - x)) for x in targets})
        out = []
        for j in picks:
            ok, buf = cv2.imencode(".jpg", self.kept[j][1], [cv2.IMWRITE_JPEG_QUALITY, 75])
            if ok:
                out.append(buf.tobytes())
        return out


# ----------------------------------------------------------------------------- the worker processes


# Decoded frames the workers together may hold beyond what their consumer has taken, split evenly
# among them. It is also how far they get while the main process imports torch and loads the model
# (about a second): 128 MB is ~0.3 s of decoding UCF11-sized frames.
AHEAD_BYTES = 128 * 2**20


def _worker_main(
    tasks: mpc.Connection, events: mpc.Connection, parent_pid: int, job_args: dict[str, Any], ring: _Ring | None,
    current: Any,
) -> None:
    """A worker: decode each (index, path) it is sent, sending the events back; None ends it.
    Chunks go through `ring` when there is one; the pipe carries the rest. Sends are synchronous,
    so every event of a video is in the pipe before the next video starts: a crash then costs only
    the video being decoded (a pipe keeps what was written before its writer died). `current`
    (shared) holds the index of the video being decoded, -1 between videos: the main process reads
    it when the worker dies. Ctrl-C is the main process's to handle (it stops the workers)."""
    from app.inputs import quiet_worker

    quiet_worker(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while (task := tasks.recv()) is not None:
            index, path = task
            current.value = index
            for ev in video_events(index, path, **job_args):
                if ring is not None and ev.frames is not None and ev.frames.nbytes <= ring.slot_bytes:
                    ev.slot, ev.shape = ring.put(ev.frames), ev.frames.shape
                    ev.frames = None
                events.send(ev)
            current.value = -1
    except (OSError, EOFError):  # the main process closed the pipes: it stopped early
        pass


class _Ring:
    """Slots of shared memory through which a worker hands its chunks to the main process, so that
    frames are neither pickled nor copied through a pipe: the worker takes a free slot (a semaphore
    counts them), writes the chunk there and sends the slot's number; the main process reads the
    frames in place and frees the slot once it is done with them. Slots are written, read and freed
    in the same order (a pipe is FIFO), so a slot is free again when the semaphore says one is.

    An anonymous shared mapping, created before the worker is forked: it has no name, so nothing is
    left in /dev/shm when a process dies. Where workers are not forked the frames go through the pipe.
    """

    def __init__(self, ctx: Any, slot_bytes: int, total_bytes: int) -> None:
        import mmap

        self.slots, self.slot_bytes = max(2, total_bytes // slot_bytes), slot_bytes
        self.buffer = mmap.mmap(-1, self.slots * slot_bytes)
        self.free = ctx.Semaphore(self.slots)
        self.next = 0  # the worker's next slot

    def put(self, frames: np.ndarray) -> int:
        """Worker side: copy `frames` into the next slot (waiting for it to be free); its number."""
        self.free.acquire()
        slot, self.next = self.next, (self.next + 1) % self.slots
        self.view(slot, frames.shape)[...] = frames
        return slot

    def view(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        """The uint8 frames in `slot`, in place."""
        return np.ndarray(shape, dtype=np.uint8, buffer=self.buffer, offset=slot * self.slot_bytes)

    def release(self) -> None:
        """Main side: the oldest slot in use is free again."""
        self.free.release()


class _Worker:
    """A worker process and what the main process assigned to it, oldest (being decoded) first."""

    def __init__(self, job_args: dict[str, Any], ring_bytes: int) -> None:
        from preprocessing.workers import worker_context

        ctx = worker_context()
        self.tasks_recv, self.tasks = ctx.Pipe(duplex=False)
        self.events, events_send = ctx.Pipe(duplex=False)
        self.ring = None
        if ctx.get_start_method() == "fork":
            W, H = job_args["size"]
            self.ring = _Ring(ctx, job_args["chunk_frames"] * W * H * 3, ring_bytes)
        self.current = ctx.Value("q", -1, lock=False)  # the video being decoded (see _worker_main)
        self.process = ctx.Process(
            target=_worker_main, args=(self.tasks_recv, events_send, os.getpid(), job_args, self.ring, self.current),
            daemon=True,
        )
        self.process.start()
        events_send.close()  # the worker holds the only writing end: its death reads as EOF here
        self.tasks_recv.close()
        self.assigned: deque[tuple[int, str]] = deque()

    def assign(self, job: tuple[int, str]) -> None:
        """Send `job`; if the worker has died, the job stays assigned and is handed out again when
        its death is read (`DecodePool._replace`)."""
        with contextlib.suppress(OSError):
            self.tasks.send(job)
        self.assigned.append(job)

    def stop(self, kill: bool) -> None:
        with contextlib.suppress(OSError):
            self.tasks.send(None)
        if kill and self.process.is_alive():
            with contextlib.suppress(OSError):
                os.kill(self.process.pid, signal.SIGTERM)
        self.tasks.close()
        self.events.close()


class DecodePool:
    """Decodes videos [(index, path)] with `preprocessing.VideoChunks` in `workers` processes,
    largest files first; iterate for the events as they come (see the module docstring), with
    `IDLE` whenever none is ready (so the consumer can run the model instead of waiting) and
    `SPARE` when moreover a worker has nothing left to do. Between two events the iterator blocks,
    unless `busy()` says the consumer has more work, in which case it yields again. The workers
    start at construction; with workers=0 the videos are decoded in this process, in order."""

    def __init__(
        self, jobs: Sequence[tuple[int, str]], *, fps: float, size: tuple[int, int], max_frames: int | None = None,
        thumbnails: int = 5, thumb_height: int = 64, audio_rate: int | None = None, workers: int = 2,
        chunk_frames: int = 64, ahead: int = 0,
    ) -> None:
        from data.preprocess_job import file_size

        self.fps, self.size, self.workers = float(fps), (int(size[0]), int(size[1])), workers
        self.job_args = dict(
            fps=self.fps, size=self.size, max_frames=max_frames, n_thumbs=thumbnails, thumb_height=thumb_height,
            audio_rate=audio_rate, threads=1 if workers > 0 else 0, chunk_frames=chunk_frames,
        )
        self.jobs = list(jobs)
        self.ahead = ahead  # videos waiting at each worker besides the one it decodes
        self.busy: Callable[[], bool] | None = None  # set by the consumer
        # pop() from the end: largest files first (a long video handed out last would keep one
        # worker busy while the others idle), as the cache builder does
        self._todo = sorted(self.jobs, key=lambda job: file_size(job[1]))
        self._workers: list[_Worker] = []
        if workers > 0 and self._todo:
            import cv2  # noqa: F401  (imported once here, inherited by the forked workers)

            import preprocessing  # noqa: F401

            n = min(workers, len(self._todo))
            self.ring_bytes = AHEAD_BYTES // n  # each worker's share
            for _ in range(n):
                self._workers.append(_Worker(self.job_args, self.ring_bytes))
            self._hand_out()

    def _hand_out(self) -> None:
        """Give each idle worker a video, and a waiting one behind it while there are more videos
        left than workers: near the end a video waiting behind another would keep a worker busy
        while one that is free has nothing to do."""
        for w in self._workers:  # first a video for each idle worker (the largest go to different ones)
            if self._todo and not w.assigned:
                w.assign(self._todo.pop())
        for w in self._workers:
            while self._todo and len(w.assigned) <= self.ahead and len(self._todo) > len(self._workers):
                w.assign(self._todo.pop())

    def close(self) -> None:
        """Stop the workers; those still decoding (the run stopped early) are terminated."""
        for w in self._workers:
            w.stop(kill=bool(w.assigned))
        self._workers = []

    def __iter__(self) -> Iterator[DecodeEvent | None]:
        if self.workers <= 0:
            for index, path in self.jobs:
                yield from video_events(index, path, **self.job_args)
            return
        try:
            while any(w.assigned for w in self._workers) or self._todo:
                ready = mpc.wait([w.events for w in self._workers], timeout=0)
                if not ready:
                    spare = not self._todo and any(not w.assigned for w in self._workers)
                    yield SPARE if spare else IDLE
                    if self.busy is not None and self.busy():  # it has more to do: look again after that
                        continue
                    ready = mpc.wait([w.events for w in self._workers])
                for w in [w for w in self._workers if w.events in ready]:
                    yield from self._read(w)
        finally:
            self.close()

    def _read(self, w: _Worker) -> Iterator[DecodeEvent]:
        """The events `w` has sent; its death (EOF) fails the video it was decoding."""
        while True:
            try:
                if not w.events.poll():
                    return
                ev = w.events.recv()
            except (EOFError, OSError):
                yield from self._replace(w)
                return
            if ev.kind in ("end", "error"):
                w.assigned.popleft()
                self._hand_out()
            if ev.slot is None:
                yield ev
                continue
            ev.frames = w.ring.view(ev.slot, ev.shape)  # valid until the consumer asks for the next event
            yield ev
            ev.frames = None
            w.ring.release()

    def _replace(self, w: _Worker) -> Iterator[DecodeEvent]:
        self._workers.remove(w)
        w.process.join(timeout=5)
        w.stop(kill=True)
        if w.assigned and w.current.value == w.assigned[0][0]:  # it died decoding that video
            index, path = w.assigned.popleft()
            log.warning("a decoding process died (exit code %s) on %s", w.process.exitcode, path)
            yield DecodeEvent("error", index, error=f"{path}: {CRASHED}")
        elif w.assigned:
            log.warning("a decoding process died (exit code %s) between videos", w.process.exitcode)
        self._todo.extend(reversed(w.assigned))  # those it had not started go next
        if self._todo:
            self._workers.append(_Worker(self.job_args, self.ring_bytes))
            self._hand_out()


def decode_pool(items: Sequence[InputItem], spec: InputSpec, options: InferenceOptions) -> DecodePool | None:
    """The decoder for the videos among `items` for a pixel model with input spec `spec` (decoding
    starts now), or None when there is nothing to decode that way (no videos, or a feature model)."""
    videos = [(i, it.path) for i, it in enumerate(items) if it.kind == "video"]
    if not isinstance(spec, PixelSpec) or not videos:
        return None
    return DecodePool(videos, fps=spec.fps, size=spec.size, **decoder_options(options))


def decoder_options(options: InferenceOptions) -> dict[str, Any]:
    """DecodePool keyword arguments from the run's options."""
    return dict(
        max_frames=options.max_frames, thumbnails=options.thumbnails, thumb_height=options.thumb_height,
        workers=options.workers, chunk_frames=options.chunk_frames,
    )
