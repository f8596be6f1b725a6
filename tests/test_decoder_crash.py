"""A decoder process that dies (a segfault in FFmpeg, the OOM killer) must cost only its own video.

The decoder is replaced by one that kills its worker process for one file, so the crash is real (the
process pool breaks, with every video in flight); the retry logic under test is the real one.
"""

import os
import time

import numpy as np

from app import inputs


def _decode_or_die(index, path, **kwargs):  # module level: the pool pickles it by name
    if os.path.basename(path) == "crash.mp4":
        os._exit(3)  # the worker dies without a word, as after a segfault
    time.sleep(0.05)  # keeps the other videos in flight when the crash comes
    return inputs.DecodedVideo(index, x=np.zeros((1, 2, 2, 3), np.uint8))


def test_a_crashing_decoder_fails_only_its_own_video(monkeypatch, tmp_path):
    monkeypatch.setattr(inputs, "_decode_video_job", _decode_or_die)  # forked workers inherit it
    jobs = []
    for i in range(8):
        path = tmp_path / ("crash.mp4" if i == 2 else f"v{i}.mp4")
        path.write_bytes(b"x" * 100 * (8 - i))  # the crasher is among the first handed out
        jobs.append((i, str(path)))
    decoder = inputs.VideoDecoder(jobs, fps=24.0, size=(2, 2), workers=2, max_inflight=8)
    out = [d for d in decoder if isinstance(d, inputs.DecodedVideo)]
    assert sorted(d.index for d in out) == list(range(8))  # every video exactly once
    errors = {d.index: d.error for d in out if d.error}
    assert list(errors) == [2] and errors[2].endswith("crash.mp4: the decoder process crashed"), errors
