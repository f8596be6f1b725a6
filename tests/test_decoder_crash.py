"""A decoder process that dies (a segfault in FFmpeg, the OOM killer) must cost only its own video;
a decoder closed before its videos are done stops its workers.

The decoder is replaced by one that kills its worker process for one file, so the crash is real (the
process pool breaks, with every video in flight); the retry logic under test is the real one.
"""

import os
import time

import numpy as np
import pytest
from robustness.forkserver import alive

from app import inputs


def _decode_or_die(index, path, **kwargs):  # module level: the pool pickles it by name
    if os.path.basename(path) == "crash.mp4":
        os._exit(3)  # the worker dies without a word, as after a segfault
    time.sleep(0.05)  # keeps the other videos in flight when the crash comes
    return inputs.DecodeResult(index, x=np.zeros((1, 2, 2, 3), np.uint8))


@pytest.mark.parametrize("n,crasher,max_inflight,consumer_s", [(8, 2, 8, 0.0), (16, 6, 2, 0.08)])
def test_a_crashing_decoder_fails_only_its_own_video(monkeypatch, tmp_path, n, crasher, max_inflight, consumer_s):
    """All videos in flight at once; or few in flight and a consumer that works between results
    (as the model does), so the pool is found broken when the next video is handed out."""
    monkeypatch.setattr(inputs, "_decode_video_job", _decode_or_die)  # forked workers inherit it
    jobs = []
    for i in range(n):
        path = tmp_path / ("crash.mp4" if i == crasher else f"v{i}.mp4")
        path.write_bytes(b"x" * 100 * (n - i))  # handed out in index order (largest first)
        jobs.append((i, str(path)))
    decoder = inputs.DecodePool(jobs, fps=24.0, size=(2, 2), workers=2, max_inflight=max_inflight)
    out = []
    for d in decoder:
        if isinstance(d, inputs.DecodeResult):
            out.append(d)
            time.sleep(consumer_s)
    assert sorted(d.index for d in out) == list(range(n))  # every video exactly once
    errors = {d.index: d.error for d in out if d.error}
    assert list(errors) == [crasher] and errors[crasher].endswith("crash.mp4: the decoder process crashed"), errors


def _decode_slowly(index, path, **kwargs):  # module level: the pool pickles it by name
    time.sleep(60)
    return inputs.DecodeResult(index, x=np.zeros((1, 2, 2, 3), np.uint8))


def test_closing_a_decoder_early_stops_its_workers(monkeypatch, tmp_path):
    """A run that stops before its videos are decoded (an error after the decoders started, Ctrl-C)
    must not leave workers decoding: the interpreter's exit would wait for them."""
    monkeypatch.setattr(inputs, "_decode_video_job", _decode_slowly)
    (tmp_path / "v.mp4").write_bytes(b"x" * 100)
    decoder = inputs.DecodePool([(0, str(tmp_path / "v.mp4"))] * 2, fps=24.0, size=(2, 2), workers=2)
    pids = list(decoder._pool._processes)
    assert len(pids) == 2
    decoder.close()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), f"workers {pids} still running 10 s after close()"
