"""Preprocessing: probe and decode videos (PyAV, OpenCV fallback), sample at a fixed fps, resize to
the dataset's size, and cache uint8 `(T, H, W, 3)` arrays on disk."""
