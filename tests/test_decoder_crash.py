"""A decoder process that dies (a segfault in FFmpeg, the OOM killer) must cost only its own video;
a decoder closed before its videos are done stops its workers.

The decoding of one file is replaced by one that kills its worker process, so the crash is real;
the handling under test is the real one.
"""

import os
import time

import numpy as np
import pytest
from robustness.forkserver import alive

from app import decoding


def _decode_or_die(index, path, **kwargs):  # forked workers inherit the patched module
    if os.path.basename(path) == "crash.mp4":
        yield decoding.DecodeEvent("start", index)
        yield decoding.DecodeEvent("chunk", index, frames=np.zeros((1, 2, 2, 3), np.uint8))
        os._exit(3)  # the worker dies without a word, as after a segfault
    time.sleep(0.05)  # keeps the other videos in flight when the crash comes
    yield decoding.DecodeEvent("start", index)
    yield decoding.DecodeEvent("chunk", index, frames=np.zeros((1, 2, 2, 3), np.uint8))
    yield decoding.DecodeEvent("end", index, total_frames=1)


@pytest.mark.parametrize("n,crasher,consumer_s,ahead", [(8, 2, 0.0, 0), (16, 6, 0.08, 1), (8, 3, 0.0, 1), (5, 4, 0.0, 0)])
def test_a_crashing_decoder_fails_only_its_own_video(monkeypatch, tmp_path, n, crasher, consumer_s, ahead):
    """Several videos per worker, with a consumer that works between events (as the model does) or
    not, with a video waiting behind the one being decoded (ahead=1) or not; the last one crashing
    too (nothing left to hand out to a fresh worker)."""
    monkeypatch.setattr(decoding, "video_events", _decode_or_die)
    jobs = []
    for i in range(n):
        path = tmp_path / ("crash.mp4" if i == crasher else f"v{i}.mp4")
        path.write_bytes(b"x" * 100 * (n - i))  # handed out in index order (largest first)
        jobs.append((i, str(path)))
    decoder = decoding.DecodePool(jobs, fps=24.0, size=(2, 2), workers=2, ahead=ahead)
    last = {}
    for ev in decoder:
        if isinstance(ev, decoding.DecodeEvent):
            assert last.get(ev.index) not in ("end", "error"), f"video {ev.index}: {ev.kind} after its last event"
            last[ev.index] = ev.kind
            time.sleep(consumer_s)
    assert sorted(last) == list(range(n))  # every video, each ending exactly once
    assert {i for i, kind in last.items() if kind == "error"} == {crasher}
    assert {i for i, kind in last.items() if kind == "end"} == set(range(n)) - {crasher}


def test_the_crash_message_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(decoding, "video_events", _decode_or_die)
    (tmp_path / "crash.mp4").write_bytes(b"x")
    errors = [ev.error for ev in decoding.DecodePool([(0, str(tmp_path / "crash.mp4"))], fps=24.0, size=(2, 2), workers=1)
              if isinstance(ev, decoding.DecodeEvent) and ev.kind == "error"]
    assert errors == [f"{tmp_path / 'crash.mp4'}: the decoder process crashed"]


def _decode_slowly(index, path, **kwargs):
    time.sleep(60)
    yield decoding.DecodeEvent("error", index, error="never")


def test_closing_a_decoder_early_stops_its_workers(monkeypatch, tmp_path):
    """A run that stops before its videos are decoded (an error after the decoders started, Ctrl-C)
    must not leave workers decoding: the interpreter's exit would wait for them."""
    monkeypatch.setattr(decoding, "video_events", _decode_slowly)
    (tmp_path / "v.mp4").write_bytes(b"x" * 100)
    decoder = decoding.DecodePool([(0, str(tmp_path / "v.mp4"))] * 2, fps=24.0, size=(2, 2), workers=2)
    pids = [w.process.pid for w in decoder._workers]
    assert len(pids) == 2
    decoder.close()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), f"workers {pids} still running 10 s after close()"


def _decode_then_die(index, path, **kwargs):
    yield decoding.DecodeEvent("start", index)
    yield decoding.DecodeEvent("chunk", index, frames=np.zeros((1, 2, 2, 3), np.uint8))
    yield decoding.DecodeEvent("end", index, total_frames=1)
    if os.path.basename(path) == "last_words.mp4":
        os._exit(3)  # dies after its video is done, before it takes the next


@pytest.mark.parametrize("ahead", [0, 1])
def test_a_worker_dying_between_videos_costs_no_video(monkeypatch, tmp_path, ahead):
    """The video handed to a worker that then dies without starting it is decoded by a fresh one."""
    monkeypatch.setattr(decoding, "video_events", _decode_then_die)
    jobs = []
    for i, name in enumerate(["last_words.mp4", "b.mp4", "c.mp4"]):
        (tmp_path / name).write_bytes(b"x" * 100 * (3 - i))  # handed out in this order
        jobs.append((i, str(tmp_path / name)))
    events = [ev for ev in decoding.DecodePool(jobs, fps=24.0, size=(2, 2), workers=1, ahead=ahead)
              if isinstance(ev, decoding.DecodeEvent)]
    assert sorted(ev.index for ev in events if ev.kind == "end") == [0, 1, 2]
    assert not [ev.error for ev in events if ev.kind == "error"]
