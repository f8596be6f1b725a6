"""Decode a video file into a uint8 `(T, H, W, 3)` RGB array: display order, fixed fps, fixed size.

The one preprocessing function of the project: the cache builder (`python -m app preprocess`) and
inference (`classify`) both call `video_to_array`, so a model sees the same pixels in training and in
use. The facts it relies on were measured on real files (docs/DESIGN.md, "Decoding"):

- PyAV is the primary decoder; OpenCV is the fallback when PyAV fails on a file (or when asked for).
- Frames come out of the decoder in display order. AVI timestamps are not monotonic with packed
  B-frames, so in AVI (or whenever timestamps go backwards or are missing) frame `i` is at `i / fps`.
- Other containers use the timestamps minus the stream's start time (MPEG-1 PS starts at 0.5 s),
  with `average_rate` (not `base_rate`) wherever a rate is needed.
- The rotation in the stream's display matrix is applied, so output is upright (OpenCV does this
  itself; PyAV does not).
- Only the frames that are kept are converted: one reused `VideoReformatter` scales to the target size
  with libswscale's area filter and converts to rgb24 in one pass.
- One decoding code path: `VideoChunks` gives the frames in chunks of bounded size (a 2-hour clip
  is never held whole), and `video_to_array` / `decode_video` gather its chunks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.video.reformatter
import numpy as np

from preprocessing.sampling import FpsSampler, as_fraction

log = logging.getLogger(__name__)

Backend = Literal["auto", "pyav", "opencv"]


class VideoDecodeError(Exception):
    """A file that cannot be decoded into frames. The message is one line: `<path>: <reason>`."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the library said
        super().__init__(f"{self.path}: {self.reason}")


class _Failure(Exception):
    """A decoder gave up on a file (internal: turned into VideoDecodeError or a fallback)."""


class _Refused(_Failure):
    """The file decoded, but what it holds is unusable: not worth a fallback."""


class _Truncated(_Refused):
    """The file decoded, but to much less than its header promises: damaged."""


# A clip is called truncated when it decodes to less than this share of its header's duration
# (and at least a second less). Headers are estimates, so the margin is wide.
_TRUNCATED_SHARE = 0.5

# `video_to_array` holds a clip's frames in memory whole. Timestamps decide how often each frame
# repeats, and a damaged or hostile file can put its last frame hours or years after the others (a 1 KB
# file then asks for tens of GiB): `video_to_array` refuses such a file before the frames are
# allocated. `max_frames` bounds the output, so it decodes any file. 8 GiB is about 1.6 hours of
# 160x120 frames at 24 fps. `VideoChunks` has no cap: it holds one chunk at a time, and a caller that
# writes the frames to disk checks the disk instead (preprocessing/cache.py).
MAX_OUTPUT_BYTES = 8 * 2**30


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about one video stream (headers can lie: decode to count)."""

    path: str
    container: str  # FFmpeg's container name, e.g. "avi", "mpeg", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "mpeg4", "h264", "mpeg1video"
    width: int  # stored frame width, before rotation
    height: int  # stored frame height, before rotation
    rotation: int  # degrees counterclockwise that make the picture upright: 0, 90, 180 or 270
    fps: float | None  # average frame rate (None when the header has none)
    duration: float | None  # seconds, from the header (an estimate)
    start_time: float  # seconds; subtracted from frame times (0.5 on MPEG-1 PS files)
    num_frames: int | None  # frame count in the header, None when absent; often wrong
    stream: int  # which video stream this is, counting video streams only (0 = first)
    num_video_streams: int  # video streams in the file
    num_streams: int  # streams of any kind in the file

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the upright picture."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


@dataclass(frozen=True)
class DecodedVideo:
    """`video_to_array`'s frames plus which backend produced them (recorded in the cache)."""

    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    backend: str  # "pyav" or "opencv"


class _Restart:
    """The type of `RESTART` (one instance; pickles as that instance)."""

    def __repr__(self) -> str:
        return "RESTART"

    def __reduce__(self) -> str:
        return "RESTART"


RESTART = _Restart()  # yielded by VideoChunks: drop the frames yielded so far, they start again at frame 0


@dataclass(frozen=True)
class _End:
    """Internal item of the backends: the clip has `total` output frames (the fps rule's length)."""

    total: int


class VideoChunks:
    """A video's frames as uint8 `(k, H, W, 3)` arrays of 1..chunk_frames frames, in display order.

    The streaming form of `video_to_array`, for clips too long to hold whole (a cache writer appends
    each chunk to a file). Same arguments and rules (see `video_to_array`); `video_to_array` and
    `decode_video` gather these chunks, so there is one decoding code path. The contract:

    - The iterator may yield `RESTART`, meaning "discard every frame yielded so far for this video;
      frames start again from frame 0". It comes when the PyAV path finds timestamps that go backwards
      (or vanish) after chunks were yielded, and decodes again with index timing; or when PyAV fails
      mid-file and the OpenCV fallback takes over (backend "auto"). Nothing yielded yet: no RESTART.
    - The chunks after the last RESTART, concatenated, are exactly `video_to_array(same arguments)`
      (same bytes), for every file and argument combination.
    - Errors are `VideoDecodeError`, as for `video_to_array`, possibly raised after some chunks were
      yielded: truncation is known only at the end.
    - Memory: at most `chunk_frames` output frames are held (plus the decoded frame pending), whatever
      the length of the video; a frame repeated many times comes out across several chunks. The last
      frame decided is handed out only once the next one is decided or the clip ends, because the
      clip's end can cut it (the fps rule's output length).
    - No output cap: MAX_OUTPUT_BYTES applies to `video_to_array` / `decode_video` only.

    Attributes, reset and updated by each iteration (every `iter()` decodes the file again):
    backend: "pyav" or "opencv", the backend whose frames follow (None before the first item); final
        once iteration ends.
    expected_frames: the output length the container header promises (duration x fps, capped by
        max_frames), for progress bars and disk checks; None when the header has no duration. Headers
        lie: an estimate. Set when the file is opened, so known once the iterator has produced its
        first item (chunk, RESTART or error), not at construction (that would open the file twice).
    planned_frames: output frames decided since the last RESTART: yielded, held, and the repeats of
        the current frame still to come (at most one more than the final count). A caller checks its
        budget against it at each chunk: a frame the timestamps repeat a billion times is refused
        after one chunk of it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: float | None = 24.0,
        size: tuple[int, int] | None = (160, 120),
        stream: int | None = None,
        backend: Backend = "auto",
        max_frames: int | None = None,
        threads: int = 0,
        chunk_frames: int = 64,
    ):
        assert backend in ("auto", "pyav", "opencv"), f"unknown backend {backend!r}"
        assert size is None or (len(size) == 2 and min(size) > 0), f"size must be (width, height), got {size}"
        assert max_frames is None or max_frames > 0, f"max_frames must be positive, got {max_frames}"
        assert chunk_frames >= 1, f"chunk_frames must be positive, got {chunk_frames}"
        self.path = path
        self.fps = fps
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.stream = stream
        self.requested = backend
        self.max_frames = max_frames
        self.threads = threads
        self.chunk_frames = int(chunk_frames)
        self.backend: str | None = None
        self.expected_frames: int | None = None
        self.planned_frames = 0

    def __iter__(self) -> Iterator[np.ndarray | _Restart]:
        self.backend, self.expected_frames, self.planned_frames = None, None, 0
        _check_readable(self.path)
        with contextlib.closing(self._items()) as items:  # closes the container even if we stop early
            yield from self._chunks(items)

    def _chunks(self, items: Iterator) -> Iterator[np.ndarray | _Restart]:
        """Cut the backends' `(image, repeats)` items into chunks. A full chunk goes out only once a
        further frame is decided, so the last frame is still held when `_End` says how many there are."""
        buf, n, yielded, total = None, 0, False, None
        for item in items:
            if item is RESTART:
                if yielded:
                    yield RESTART
                buf, n, yielded, total, self.planned_frames = None, 0, False, None, 0
            elif isinstance(item, _End):
                total = item.total
            else:
                image, repeats = item
                self.planned_frames += repeats
                while repeats:
                    if n == self.chunk_frames:
                        yielded = True
                        yield buf
                        buf, n = None, 0
                    if buf is None:
                        buf = np.empty((self.chunk_frames, *image.shape), np.uint8)
                    take = min(repeats, self.chunk_frames - n)
                    buf[n : n + take] = image
                    n, repeats = n + take, repeats - take
        assert total is not None, f"{self.path}: the decoder ended without the clip's length"
        excess = self.planned_frames - total
        assert 0 <= excess <= n, f"{self.path}: {self.planned_frames} frames decided for {total}"
        self.planned_frames = total
        if n > excess:
            yield buf[: n - excess]

    def _items(self) -> Iterator:
        """`(image, repeats)` items, RESTART and a final `_End` from PyAV, or from OpenCV when PyAV fails
        (backend "auto") or when asked for; every failure becomes a VideoDecodeError."""
        pyav_reason = None
        if self.requested in ("auto", "pyav"):
            self.backend = "pyav"
            try:
                yield from self._pyav_items()
                return
            except _Refused as e:  # decoded, but unusable: not worth a fallback
                raise VideoDecodeError(self.path, str(e)) from e
            except _PYAV_ERRORS as e:
                pyav_reason = _reason(e)
                if self.requested == "pyav":
                    raise VideoDecodeError(self.path, pyav_reason) from e
            self.backend = "opencv"
            yield RESTART  # passed on only if PyAV's frames were handed out
        self.backend = "opencv"
        try:
            yield from _opencv_items(self.path, self.fps, self.size, self.stream, self.max_frames, self._expect)
        except _Failure as e:
            if pyav_reason is None:
                raise VideoDecodeError(self.path, str(e)) from e
            raise VideoDecodeError(self.path, f"{pyav_reason} (OpenCV fallback: {e})") from e
        if pyav_reason is not None:
            log.warning("%s: PyAV failed (%s); decoded with OpenCV instead", self.path, pyav_reason)

    def _pyav_items(self) -> Iterator:
        """PyAV's items: by timestamps (index timing in AVI), and again by index when they go backwards."""
        try:
            yield from _pyav_pass(self, index_timing=None)
        except _NonMonotonic as e:
            log.debug("%s: timestamps not monotonic; using decode order at %s fps", self.path, e.args[0])
            yield RESTART
            yield from _pyav_pass(self, index_timing=True)

    def _expect(self, header_seconds: float | None, rate: Fraction) -> None:
        """Set `expected_frames` from the header's duration (None: unknown)."""
        if not header_seconds or not math.isfinite(header_seconds) or header_seconds < 0:
            self.expected_frames = None
            return
        frames = max(1, math.floor(header_seconds * float(self.fps or rate)))
        self.expected_frames = frames if self.max_frames is None else min(frames, self.max_frames)


def video_to_array(
    path: str | os.PathLike,
    *,
    fps: float | None = 24.0,
    size: tuple[int, int] | None = (160, 120),
    stream: int | None = None,
    backend: Backend = "auto",
    max_frames: int | None = None,
    threads: int = 0,
) -> np.ndarray:
    """Decode `path` into uint8 `(T, height, width, 3)` RGB frames in display order.

    fps: sampling rate (the rule in `preprocessing.sampling`); None keeps every decoded frame.
    size: (width, height) of the output, area interpolation, aspect ratio not preserved; None keeps
        the (upright) source size.
    stream: which video stream, counting video streams only (0 = first, like ffmpeg's `0:v:0`);
        None = the first one that is not a cover picture.
    backend: "auto" (PyAV, OpenCV if PyAV fails), "pyav" or "opencv".
    max_frames: stop after this many output frames (None: the whole clip).
    threads: decoder threads; 0 lets FFmpeg choose, 1 for one thread per process (worker pools).
        The output does not depend on it.
    Raises VideoDecodeError for anything that cannot be decoded, and for an output above
    MAX_OUTPUT_BYTES. `VideoChunks` gives the same frames a chunk at a time.
    """
    return decode_video(
        path, fps=fps, size=size, stream=stream, backend=backend, max_frames=max_frames, threads=threads
    ).frames


def decode_video(
    path: str | os.PathLike,
    *,
    fps: float | None = 24.0,
    size: tuple[int, int] | None = (160, 120),
    stream: int | None = None,
    backend: Backend = "auto",
    max_frames: int | None = None,
    threads: int = 0,
) -> DecodedVideo:
    """`video_to_array` that also says which backend decoded the file: the chunks of `VideoChunks`
    gathered (dropped at a RESTART). The output cap is checked at each chunk against the frames
    decided so far, so a file whose timestamps ask for terabytes is refused after one chunk."""
    chunks = VideoChunks(
        path, fps=fps, size=size, stream=stream, backend=backend, max_frames=max_frames, threads=threads
    )
    parts: list[np.ndarray] = []
    for chunk in chunks:
        if chunk is RESTART:
            parts.clear()
            continue
        parts.append(chunk)
        check_output_size(path, chunks.planned_frames, (chunk.shape[2], chunk.shape[1]))
    return DecodedVideo(np.concatenate(parts), chunks.backend)


def probe(path: str | os.PathLike, *, stream: int | None = None) -> VideoInfo:
    """Read the header of `path` (and its first frame, for the rotation). Raises VideoDecodeError."""
    _check_readable(path)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            vs, ordinal = _pick_stream(container, stream)
            rotation = 0
            for frame in container.decode(vs):
                rotation = _normalize_rotation(frame.rotation)
                break
            tb = vs.time_base
            start = float(vs.start_time * tb) if vs.start_time is not None else 0.0
            if vs.duration is not None:
                duration = float(vs.duration * tb)
            elif container.duration is not None:
                duration = container.duration / av.time_base - start
            else:
                duration = None
            rate = vs.average_rate or vs.guessed_rate
            return VideoInfo(
                path=str(path),
                container=container.format.name,
                codec=vs.codec_context.name,
                width=vs.codec_context.width,
                height=vs.codec_context.height,
                rotation=rotation,
                fps=float(rate) if rate else None,
                duration=duration,
                start_time=start,
                num_frames=vs.frames or None,
                stream=ordinal,
                num_video_streams=len(container.streams.video),
                num_streams=len(container.streams),
            )
    except _PYAV_ERRORS as e:
        raise VideoDecodeError(path, _reason(e)) from e


# --- file checks and errors ------------------------------------------------------------------------


def _check_readable(path: str | os.PathLike) -> None:
    """Turn the operating system's reasons (missing, folder, permission, empty) into VideoDecodeError."""
    p = Path(path)
    try:
        mode = p.stat().st_mode  # follows symlinks: a link to a video is fine, a loop raises ELOOP
        if stat.S_ISDIR(mode):
            raise VideoDecodeError(path, "is a directory, not a video file")
        if not stat.S_ISREG(mode):
            # A named pipe would block open() until a writer appears, a device could be endless.
            raise VideoDecodeError(path, "not a regular file (a pipe, socket or device)")
        with open(p, "rb") as f:
            first = f.read(1)
    except FileNotFoundError:
        raise VideoDecodeError(path, "no such file") from None
    except PermissionError:
        raise VideoDecodeError(path, "permission denied") from None
    except OSError as e:
        raise VideoDecodeError(path, e.strerror or str(e)) from None
    if not first:
        raise VideoDecodeError(path, "empty file")


_PYAV_ERRORS = (av.FFmpegError, _Failure, OSError, ValueError, IndexError)


def _reason(e: BaseException) -> str:
    """The library's reason without the file name it repeats."""
    if isinstance(e, av.FFmpegError) and getattr(e, "strerror", None):
        return f"PyAV: {e.strerror}"
    return f"PyAV: {e}" if not isinstance(e, _Failure) else str(e)


# --- PyAV ------------------------------------------------------------------------------------------

_local = threading.local()  # one VideoReformatter per thread of each process: the scaler is reused


def _reformatter() -> av.video.reformatter.VideoReformatter:
    if not hasattr(_local, "reformatter"):
        _local.reformatter = av.video.reformatter.VideoReformatter()
    return _local.reformatter


def _pick_stream(container: av.container.InputContainer, stream: int | None):
    """The chosen video stream and its ordinal among video streams."""
    videos = list(container.streams.video)
    if not videos:
        raise _Failure("no video stream")
    if stream is not None:
        if not 0 <= stream < len(videos):
            raise _Failure(f"video stream {stream} requested, the file has {len(videos)}")
        vs, ordinal = videos[stream], stream
    else:
        # skip cover pictures (an mp4's thumbnail is a 1-frame stream)
        ordinal = next((i for i, v in enumerate(videos) if not v.disposition & av.stream.Disposition.attached_pic), 0)
        vs = videos[ordinal]
    if vs.codec_context is None:  # FFmpeg has no decoder for its codec (or the header is damaged)
        raise _Failure(f"no decoder for the codec of video stream {ordinal}")
    return vs, ordinal


_warned_rotations: set[float] = set()  # each odd value is logged once per process, not once per frame


def _normalize_rotation(degrees: float | int | None) -> int:
    """Counterclockwise rotation snapped to 0/90/180/270 (display matrices can carry -90, -180, ...)."""
    if not degrees:
        return 0
    if not math.isfinite(degrees) or abs(degrees) > 360:  # a damaged display matrix (PyAV gives INT_MIN)
        snapped = 0
    else:
        snapped = int(round(degrees / 90.0)) * 90 % 360
    if abs((degrees - snapped + 180) % 360 - 180) > 1 and degrees not in _warned_rotations:
        _warned_rotations.add(degrees)
        log.warning("rotation of %s degrees is not a multiple of 90; using %s", degrees, snapped)
    return snapped


class _NonMonotonic(Exception):
    """Timestamps went backwards or vanished: decode again with index timing (args: the rate)."""


def _pyav_pass(job: VideoChunks, index_timing: bool | None) -> Iterator:
    """One PyAV decode of `job`'s file: `(image, repeats)` items in display order, then `_End`. Only
    frames that get output slots are converted; a frame's slots are known when the next frame's time
    is. Raises _NonMonotonic (by timestamps only) for the caller to decode again by index."""
    size, max_frames = job.size, job.max_frames
    with av.open(str(job.path), metadata_errors="ignore") as container:
        vs, _ = _pick_stream(container, job.stream)
        cc = vs.codec_context
        cc.thread_count = job.threads  # 0: FFmpeg picks (one per core); the frames are the same either way
        if job.threads != 1:
            cc.thread_type = "AUTO"  # frame and slice threads
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(25)
        tb = vs.time_base or Fraction(1, 90000)
        if index_timing is None:
            index_timing = container.format.name == "avi"
        # The header's length: the stream duration, or its frame count (an AVI cut short keeps
        # its count but gets a duration estimated from the file size).
        header = max(float(vs.duration * tb) if vs.duration else 0.0, (vs.frames or 0) / float(rate))
        job._expect(header or _container_seconds(container, vs, tb), rate)
        sampler = FpsSampler(job.fps)
        pending = None  # the frame on screen until the next frame's time: how often it repeats is known then
        start = vs.start_time
        last_t = Fraction(0)
        n = produced = 0
        for n, frame in enumerate(container.decode(vs), start=1):
            if index_timing:
                t = Fraction(n - 1) / rate
            else:
                if frame.pts is None:
                    raise _NonMonotonic(rate)
                if start is None:
                    start = frame.pts
                t = Fraction(frame.pts - start) * tb
                if pending is not None and t < last_t:
                    raise _NonMonotonic(rate)
            if size is None:  # keep the first frame's (upright) size, even if the stream changes size
                size = _upright_size(frame)
            if pending is not None:
                repeats = sampler.slots_until(t)
                if max_frames is not None:
                    repeats = min(repeats, max_frames - produced)
                if repeats:
                    yield _to_rgb(pending, size), repeats
                    produced += repeats
                if max_frames is not None and produced >= max_frames:
                    yield _End(produced)
                    return
            pending, last_t = frame, t
        if pending is None:
            raise _Failure("no video frames could be decoded")
        if index_timing or not pending.duration or pending.duration < 0:
            duration = 1 / Fraction(rate)
        else:
            duration = Fraction(pending.duration) * tb
        end = last_t + duration
        _check_complete(float(end), header)
        total = sampler.total(end, n)
        if max_frames is not None:
            total = min(total, max_frames)
        if produced < total:
            yield _to_rgb(pending, size), total - produced
        yield _End(total)


def _container_seconds(container: av.container.InputContainer, vs, tb: Fraction) -> float | None:
    """The container's duration from the stream's start (MPEG-1 PS has no stream duration), or None."""
    if container.duration is None:
        return None
    start = float(vs.start_time * tb) if vs.start_time is not None else 0.0
    return container.duration / av.time_base - start


def _check_complete(decoded_seconds: float, header_seconds: float) -> None:
    if decoded_seconds < _TRUNCATED_SHARE * header_seconds and header_seconds - decoded_seconds > 1.0:
        raise _Truncated(
            f"truncated or damaged: decoded {decoded_seconds:.2f} s of the {header_seconds:.2f} s in its header"
        )


def check_output_size(path: str | os.PathLike, frames: int, size: tuple[int, int]) -> None:
    """Refuse an output of `frames` frames of `size` (W, H) above MAX_OUTPUT_BYTES: `video_to_array`
    checks it as chunks come, and so does anything else that holds a whole video (VideoChunks does not)."""
    nbytes = frames * size[0] * size[1] * 3
    if nbytes > MAX_OUTPUT_BYTES:
        raise VideoDecodeError(
            path,
            f"its timestamps span too long a time: {frames} frames of {size[0]}x{size[1]} would take "
            f"{nbytes / 2**30:.1f} GiB (limit {MAX_OUTPUT_BYTES / 2**30:g} GiB); pass max_frames to keep fewer",
        )


def _upright_size(frame: av.VideoFrame) -> tuple[int, int]:
    rotation = _normalize_rotation(frame.rotation)
    return (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """One frame as upright uint8 (H, W, 3) RGB at `size` (W, H), scaled and converted in one swscale
    pass (libswscale's area filter; within ~1 grey level of converting first and then cv2 INTER_AREA:
    docs/BENCHMARKS.md, "Decoding")."""
    rotation = _normalize_rotation(frame.rotation)
    if rotation in (90, 270):
        height, width = size  # scale the stored (sideways) picture so that it is `size` once turned
    else:
        width, height = size
    rgb = _reformatter().reformat(
        frame, width=width, height=height, format="rgb24", interpolation="AREA", threads=1
    )
    image = rgb.to_ndarray()  # (height, width, 3)
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))  # counterclockwise, upright
    return image


# --- OpenCV fallback -------------------------------------------------------------------------------


def _opencv_items(path, fps, size, stream, max_frames, expect) -> Iterator:
    """OpenCV's FFmpeg backend: auto-rotates, first video stream only, frame i at i / fps. Items as
    `_pyav_pass` gives them; `expect(header_seconds, rate)` gets the header's length."""
    import cv2  # imported here: only needed when PyAV fails or when asked for

    if stream not in (None, 0):
        raise _Failure(f"OpenCV cannot select video stream {stream}")
    if not os.fsencode(path).decode("utf-8", "replace").encode("utf-8") == os.fsencode(path):
        raise _Failure("OpenCV cannot open a file name that is not valid UTF-8")  # cv2 crashes on one
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise _Failure("OpenCV could not open the file")
        rate = cap.get(cv2.CAP_PROP_FPS)
        if not (rate > 0 and math.isfinite(rate)):
            raise _Failure(f"OpenCV reports no frame rate ({rate})")
        rate = as_fraction(rate)
        if rate <= 0:  # a rate below one frame in a million seconds rounds to 0
            raise _Failure(f"OpenCV reports a frame rate of {cap.get(cv2.CAP_PROP_FPS)}")
        expect(_opencv_header_seconds(cap, rate), rate)
        sampler = FpsSampler(fps)
        n = produced = 0
        rgb = None
        while cap.grab():
            n += 1
            # Index timing: frame n-1 is on screen until n / rate, known now, so only kept frames
            # are converted (retrieve) and resized.
            repeats = sampler.slots_until(Fraction(n) / rate)
            if repeats:
                ok, bgr = cap.retrieve()
                if not ok:
                    raise _Failure(f"OpenCV could not convert frame {n - 1}")
                if size is None:  # keep the first frame's size, even if the stream changes size
                    size = (bgr.shape[1], bgr.shape[0])
                if (bgr.shape[1], bgr.shape[0]) != size:
                    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                if max_frames is not None:
                    repeats = min(repeats, max_frames - produced)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield rgb, repeats
                produced += repeats
            if max_frames is not None and produced >= max_frames:
                yield _End(produced)
                return
        if n == 0 or not produced:
            raise _Failure("OpenCV decoded no frames")
        header_seconds = _opencv_header_seconds(cap, rate)
        if header_seconds is not None:
            _check_complete(n / float(rate), header_seconds)
        total = sampler.total(Fraction(n) / rate, n)
        if max_frames is not None:
            total = min(total, max_frames)
        if produced < total:
            yield rgb, total - produced
        yield _End(total)
    finally:
        cap.release()


def _opencv_header_seconds(cap, rate: Fraction) -> float | None:
    """The length OpenCV's header frame count gives, or None when it has none."""
    import cv2

    header_frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    if header_frames > 0 and math.isfinite(header_frames):
        return header_frames / float(rate)
    return None
