"""Preprocessing: probe and decode videos (PyAV, OpenCV fallback), sample at a fixed fps, resize to
the dataset's size, and cache uint8 `(T, H, W, 3)` arrays on disk.

Public API: `video_to_array`, `decode_video`, `VideoChunks` (the same frames a chunk at a time) and its
`RESTART` marker, `probe`, `VideoInfo`, `VideoDecodeError` (from `preprocessing.decode`); the cache
reader and writer live in `preprocessing.cache`.
"""

from preprocessing.decode import (
    RESTART,
    DecodedVideo,
    VideoChunks,
    VideoDecodeError,
    VideoInfo,
    decode_video,
    probe,
    video_to_array,
)

__all__ = [
    "RESTART",
    "DecodedVideo",
    "VideoChunks",
    "VideoDecodeError",
    "VideoInfo",
    "decode_video",
    "probe",
    "video_to_array",
]
