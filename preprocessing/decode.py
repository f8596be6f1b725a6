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
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
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

# The frames of a clip are held in memory whole. Timestamps decide how often each frame repeats, and a
# damaged or hostile file can put its last frame hours or years after the others (a 1 KB file then
# asks for tens of GiB): such a file is refused before anything is allocated. `max_frames` bounds the
# output, so it decodes any file. 8 GiB is about 1.6 hours of 160x120 frames at 24 fps.
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
    Raises VideoDecodeError for anything that cannot be decoded.
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
    """`video_to_array` that also says which backend decoded the file."""
    assert backend in ("auto", "pyav", "opencv"), f"unknown backend {backend!r}"
    assert size is None or (len(size) == 2 and min(size) > 0), f"size must be (width, height), got {size}"
    assert max_frames is None or max_frames > 0, f"max_frames must be positive, got {max_frames}"
    _check_readable(path)
    size = None if size is None else (int(size[0]), int(size[1]))
    pyav_reason = None
    if backend in ("auto", "pyav"):
        try:
            return DecodedVideo(_decode_pyav(path, fps, size, stream, max_frames, threads), "pyav")
        except _Refused as e:
            raise VideoDecodeError(path, str(e)) from e
        except _PYAV_ERRORS as e:
            pyav_reason = _reason(e)
            if backend == "pyav":
                raise VideoDecodeError(path, pyav_reason) from e
    try:
        frames = _decode_opencv(path, fps, size, stream, max_frames)
    except _Failure as e:
        if pyav_reason is None:
            raise VideoDecodeError(path, str(e)) from e
        raise VideoDecodeError(path, f"{pyav_reason} (OpenCV fallback: {e})") from e
    if pyav_reason is not None:
        log.warning("%s: PyAV failed (%s); decoded with OpenCV instead", path, pyav_reason)
    return DecodedVideo(frames, "opencv")


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
    """Timestamps went backwards or vanished: decode again with index timing."""


def _decode_pyav(path, fps, size, stream, max_frames, threads, index_timing=None) -> np.ndarray:
    with av.open(str(path), metadata_errors="ignore") as container:
        vs, _ = _pick_stream(container, stream)
        cc = vs.codec_context
        cc.thread_count = threads  # 0: FFmpeg picks (one per core); the frames are the same either way
        if threads != 1:
            cc.thread_type = "AUTO"  # frame and slice threads
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(25)
        tb = vs.time_base or Fraction(1, 90000)
        if index_timing is None:
            index_timing = container.format.name == "avi"
        sampler = FpsSampler(fps)
        out: list[np.ndarray] = []
        pending = None  # the frame on screen until the next frame's time: how often it repeats is known then
        start = vs.start_time
        last_t = Fraction(0)
        n = 0
        try:
            for n, frame in enumerate(container.decode(vs), start=1):
                if index_timing:
                    t = Fraction(n - 1) / rate
                else:
                    if frame.pts is None:
                        raise _NonMonotonic()
                    if start is None:
                        start = frame.pts
                    t = Fraction(frame.pts - start) * tb
                    if pending is not None and t < last_t:
                        raise _NonMonotonic()
                if size is None:  # keep the first frame's (upright) size, even if the stream changes size
                    size = _upright_size(frame)
                if pending is not None:
                    repeats = sampler.slots_until(t)
                    if max_frames is not None:
                        repeats = min(repeats, max_frames - len(out))
                    _check_output_size(len(out) + repeats, size)
                    if repeats:
                        out += [_to_rgb(pending, size)] * repeats
                    if max_frames is not None and len(out) >= max_frames:
                        return np.stack(out[:max_frames])
                pending, last_t = frame, t
        except _NonMonotonic:
            log.debug("%s: timestamps not monotonic; using decode order at %s fps", path, rate)
        else:
            if pending is None:
                raise _Failure("no video frames could be decoded")
            if index_timing or not pending.duration:
                duration = 1 / Fraction(rate)
            else:
                duration = Fraction(pending.duration) * tb
            end = last_t + duration
            # The header's length: the stream duration, or its frame count (an AVI cut short keeps
            # its count but gets a duration estimated from the file size).
            header = max(float(vs.duration * tb) if vs.duration else 0.0, (vs.frames or 0) / float(rate))
            _check_complete(float(end), header)
            total = sampler.total(end, n)
            if max_frames is not None:
                total = min(total, max_frames)
            _check_output_size(total, size)
            if len(out) < total:
                out += [_to_rgb(pending, size)] * (total - len(out))
            return np.stack(out[:total])
    return _decode_pyav(path, fps, size, stream, max_frames, threads, index_timing=True)


def _check_complete(decoded_seconds: float, header_seconds: float) -> None:
    if decoded_seconds < _TRUNCATED_SHARE * header_seconds and header_seconds - decoded_seconds > 1.0:
        raise _Truncated(
            f"truncated or damaged: decoded {decoded_seconds:.2f} s of the {header_seconds:.2f} s in its header"
        )


def _check_output_size(frames: int, size: tuple[int, int]) -> None:
    nbytes = frames * size[0] * size[1] * 3
    if nbytes > MAX_OUTPUT_BYTES:
        raise _Refused(
            f"its timestamps span too long a time: {frames} frames of {size[0]}x{size[1]} would take "
            f"{nbytes / 2**30:.1f} GiB (limit {MAX_OUTPUT_BYTES / 2**30:g} GiB); pass max_frames to keep fewer"
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


def _decode_opencv(path, fps, size, stream, max_frames) -> np.ndarray:
    """OpenCV's FFmpeg backend: auto-rotates, first video stream only, frame i at i / fps."""
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
        sampler = FpsSampler(fps)
        out: list[np.ndarray] = []
        n = 0
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
                    repeats = min(repeats, max_frames - len(out))
                _check_output_size(len(out) + repeats, size)
                out += [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)] * repeats
            if max_frames is not None and len(out) >= max_frames:
                return np.stack(out[:max_frames])
        if n == 0 or not out:
            raise _Failure("OpenCV decoded no frames")
        header_frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if header_frames > 0 and math.isfinite(header_frames):
            _check_complete(n / float(rate), header_frames / float(rate))
        total = sampler.total(Fraction(n) / rate, n)
        if max_frames is not None:
            total = min(total, max_frames)
        _check_output_size(total, size)
        out += [out[-1]] * max(0, total - len(out))
        return np.stack(out[:total])
    finally:
        cap.release()
