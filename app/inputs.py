"""What `classify` reads (`discover_inputs`) and how it runs (`InferenceOptions`). No torch here:
the command line reads its inputs and starts the decoders (`app.decoding`) before it imports torch.

    items = discover_inputs(["videos/", "clip.mp4", "shards/train*.tfrecord"])  # sniffed by content
"""

from __future__ import annotations

import glob
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
    stream_chunk: int = 16  # recurrent steps between looks for newly decoded frames
    chunk_frames: int = 64  # frames per decoded chunk sent by a worker (bounds memory per video)
    timeline: float | None = None  # segment stride in seconds; None: auto (long videos only), 0: off
    timeline_window: float | None = None  # segment length in seconds; None: the model's training clips
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


# ----------------------------------------------------------------------------- helpers for the decoders


def make_thumbnails(frames: np.ndarray, n: int, height: int) -> list[bytes]:
    """JPEG bytes of up to `n` frames spread evenly over `frames` uint8 (T, H, W, 3) RGB."""
    from app.decoding import ThumbnailPicker

    picker = ThumbnailPicker(n, height)
    picker.add(frames, 0)
    return picker.jpegs(frames.shape[0])


def one_line(msg: str) -> str:
    return " ".join(msg.split())


def quiet_worker(parent_pid: int) -> None:
    """First thing in a decode worker: end with the parent (a killed classify must not leave its
    workers waiting forever), and keep quiet: the decoder's OpenCV fallback would print FFmpeg/OpenCV
    warnings for every bad file; the error message we return already says what went wrong."""
    from preprocessing.workers import die_with_parent

    die_with_parent(parent_pid)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass
