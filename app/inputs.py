"""What `classify` reads, and the decoding of videos in worker processes. No torch here: the
command line starts the decoders before it imports torch and loads the checkpoint (the bulk of its
start-up), so the first videos are decoded by the time the model is ready.

    items = discover_inputs(["videos/", "clip.mp4", "shards/train*.tfrecord"])  # sniffed by content
    decoder = decode_pool(items, PixelSpec(size=(32, 24), fps=24.0), InferenceOptions())
    for d in decoder:  # DecodeResult results as they finish, or IDLE / SPARE while none is ready
        ...
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import glob
import logging
import os
import signal
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.specs import InputSpec, PixelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceOptions:
    """Options of a classify run (`app.inference.classify`): decoding and batching."""

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
    stream: bool = True  # continuous batching for models that support it (TT-RNNs); False: windows
    stream_chunk: int = 16  # recurrent steps between looks for newly decoded videos
    precision: str = "fp32"  # "fp32", or "bf16": the model under torch.autocast (weights stay float32)


@dataclass(frozen=True)
class InputItem:
    """One discovered input file, before it is read."""

    path: str  # as the user will see it (relative paths stay relative)
    kind: str  # "video" | "tfrecord" | "npy" | "invalid"
    error: str | None = None  # set when kind == "invalid"


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


def _is_tfrecord_header(head: bytes) -> bool:
    """A TFRecord starts with uint64 length + uint32 masked CRC32C of those 8 bytes."""
    if len(head) < 12:
        return False
    from data.tfrecord_io import masked_crc32c

    (crc,) = struct.unpack("<I", head[8:12])
    return crc == masked_crc32c(head[:8])


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
class DecodeResult:
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
) -> DecodeResult:
    """Worker body: decode one video with the cache builder's function; errors become messages."""
    from preprocessing import VideoDecodeError, video_to_array

    try:
        frames = video_to_array(path, fps=fps, size=size, max_frames=max_frames, threads=threads)  # (T, H, W, 3)
        if frames.shape[0] == 0:
            return DecodeResult(index, error=f"{path}: no frames decoded")
        audio = None
        if audio_rate is not None:
            from preprocessing.features import load_audio

            audio = load_audio(path, sample_rate=audio_rate)
        return DecodeResult(index, x=frames, audio=audio, thumbnails=make_thumbnails(frames, n_thumbs, thumb_height))
    except VideoDecodeError as e:
        return DecodeResult(index, error=one_line(str(e)))
    except MemoryError:
        return DecodeResult(index, error=f"{path}: out of memory while decoding (try --max-frames)")
    except Exception as e:  # a decoder bug must not stop the batch; the message says what it was
        log.debug("unexpected error decoding %s", path, exc_info=True)
        return DecodeResult(index, error=one_line(f"{path}: {type(e).__name__}: {e}"))


def make_thumbnails(frames: np.ndarray, n: int, height: int) -> list[bytes]:
    """JPEG bytes of `n` frames spread evenly over `frames` uint8 (T, H, W, 3) RGB."""
    import cv2

    T, H, W, _ = frames.shape
    if n <= 0 or T == 0:
        return []
    # (not np.unique: its first call imports numpy.ma, a cost paid again in every fresh worker process)
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


def one_line(msg: str) -> str:
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


IDLE = None  # yielded by DecodePool when no video is ready yet
SPARE = "spare"  # ... and, besides, a worker sits idle (no videos left to hand out): a core is free


class DecodePool:
    """Decodes videos [(index, path)] with `video_to_array` (the cache builder's decoder) in
    `workers` processes, largest files first; iterate for the results as they finish (not in
    order), with `IDLE` whenever none is ready (so the consumer can run the model instead of
    waiting) and `SPARE` when moreover a worker has nothing left to do (a core is free).

    The workers start at construction: decoding runs while the caller imports torch and loads its
    model. Up to `max_inflight` videos are decoded ahead of the consumer. Between two results the
    iterator blocks, unless `busy()` says the consumer has more work, in which case it yields again.
    A worker that dies (a decoder crash) breaks the pool and every video in flight with it: the
    pool is rebuilt and those videos are retried one at a time, so only a video that breaks a pool
    on its own gets an error. With workers=0 the videos are decoded in this process, in order.
    """

    def __init__(
        self,
        jobs: Sequence[tuple[int, str]],
        *,
        fps: float,
        size: tuple[int, int],
        max_frames: int | None = None,
        thumbnails: int = 5,
        thumb_height: int = 64,
        audio_rate: int | None = None,
        workers: int = 2,
        max_inflight: int | None = None,
    ) -> None:
        from data.preprocess_job import file_size

        self.fps, self.size, self.workers = float(fps), (int(size[0]), int(size[1])), workers
        self.job_args = dict(
            fps=self.fps, size=self.size, max_frames=max_frames, n_thumbs=thumbnails, thumb_height=thumb_height,
            audio_rate=audio_rate, threads=1 if workers > 0 else 0,  # one decoder thread per worker process
        )
        self.max_inflight = max(workers, max_inflight or 2 * workers)
        self.busy: Callable[[], bool] | None = None  # set by the consumer
        self.jobs = list(jobs)
        self._paths = dict(self.jobs)
        # pop() from the end: largest files first (decode time grows with file size; a long video handed
        # out last would keep one worker busy while the others idle), as the cache builder does
        self._todo = sorted(self.jobs, key=lambda job: file_size(job[1]))
        self._suspects: list[tuple[int, str]] = []  # in flight when a pool broke: retried one at a time
        self._pool: cf.ProcessPoolExecutor | None = None
        self._running: dict[cf.Future, int] = {}
        if workers > 0 and self._todo:
            self._open_pool()
            self._submit(self._todo, self.max_inflight)

    def _open_pool(self) -> None:
        import cv2  # noqa: F401  (imported once here, inherited by forked workers)

        import preprocessing  # noqa: F401
        from preprocessing.workers import worker_context

        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=worker_context(), initializer=_quiet_worker, initargs=(os.getpid(),)
        )

    def _submit(self, queue: list[tuple[int, str]], limit: int) -> bool:
        """Hand out videos up to `limit` in flight; False if the pool is broken (a worker died
        since the last look), with the video that could not be handed out back in `queue`."""
        while queue and len(self._running) < limit:
            index, path = queue.pop()
            try:
                self._running[self._pool.submit(_decode_video_job, index, path, **self.job_args)] = index
            except cf.process.BrokenProcessPool:
                queue.append((index, path))
                return False
        return True

    def close(self) -> None:
        """Stop handing out videos; no waiting for the workers to exit: they exit while the caller
        runs its last batch. Videos still being decoded (the run stopped early: an error, Ctrl-C) are
        abandoned: their workers are terminated, else the interpreter's exit would wait for them."""
        if self._pool is None:
            return
        workers = list(getattr(self._pool, "_processes", None) or {})  # pids; CPython's executor keeps them there
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        if self._running:
            self._running = {}
            for pid in workers:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)

    def __iter__(self) -> Iterator[DecodeResult | None]:
        if self.workers <= 0:
            for index, path in self.jobs:
                yield _decode_video_job(index, path, **self.job_args)
            return
        try:
            while self._todo or self._suspects or self._running:
                if self._pool is None:
                    self._open_pool()
                yield from self._round()
        finally:
            self.close()

    def _round(self) -> Iterator[DecodeResult | None]:
        """Decode with one pool until the queue is done or the pool breaks."""
        alone = bool(self._suspects) and not self._running
        queue, limit = (self._suspects, 1) if alone else (self._todo, self.max_inflight)
        broken = False
        while (queue or self._running) and not broken:
            if not self._submit(queue, limit):  # a worker died since the last look
                done, _ = cf.wait(self._running, return_when=cf.ALL_COMPLETED)  # the crash fails these too
                if not done:  # no video in flight to blame: the next one is tried alone
                    index, path = queue.pop()
                    if alone:  # ... and a fresh pool broke before it could take it
                        yield DecodeResult(index, error=f"{path}: the decoder process crashed")
                    else:
                        self._suspects.append((index, path))
                    self.close()
                    return
            else:
                done, _ = cf.wait(self._running, timeout=0, return_when=cf.FIRST_COMPLETED)
            if not done:
                # nothing ready: the consumer may work before we block
                free = not (self._todo or self._suspects) and len(self._running) < self.workers
                yield SPARE if free else IDLE
                if self.busy is not None and self.busy():  # it has more to do: look again after that
                    continue
                done, _ = cf.wait(self._running, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                index = self._running.pop(fut)
                try:
                    yield fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    self._running[fut] = index  # handled with the others below
        if broken:
            running, self._running = sorted(self._running.values(), reverse=True), {}
            self.close()
            if alone:  # the one video in flight broke the pool by itself
                for index in running:
                    yield DecodeResult(index, error=f"{self._paths[index]}: the decoder process crashed")
            else:
                self._suspects.extend((index, self._paths[index]) for index in running)
                log.warning("a decoding process died; retrying the %d videos in flight one at a time", len(running))


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
        workers=options.workers, max_inflight=max(2 * options.workers, options.workers + options.batch_size),
    )
