"""Preprocessing: probe and decode videos (PyAV, OpenCV fallback), sample at a fixed fps, resize to
the dataset's size, and cache uint8 `(T, H, W, 3)` arrays on disk.

Public API: `video_to_array`, `decode_video`, `probe`, `VideoInfo`, `VideoDecodeError` (from
`preprocessing.decode`); the cache reader lives in `preprocessing.cache`.
"""

from preprocessing.decode import (
    DecodedVideo,
    VideoDecodeError,
    VideoInfo,
    decode_video,
    probe,
    video_to_array,
)

__all__ = ["DecodedVideo", "VideoDecodeError", "VideoInfo", "decode_video", "probe", "video_to_array"]
