"""Regression tests for what the corpus and the fuzzers found (docs/RELIABILITY.md, "Findings").

Each input runs in a watchdog worker with a memory cap, so a regression shows up as a failed
assertion, not as a stuck or killed test run. Saved fuzzer inputs live in regressions/: every file
there must decode to frames or be refused with VideoDecodeError, and every `*.tfrecord` there must
read or fail with TFRecordError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .corpus import moving_frames, write_clip
from .watchdog import run_cases

REGRESSIONS = Path(__file__).with_name("regressions")
MEMORY_LIMIT = 2 * 2**30  # bytes a worker may add to its address space


def _decode_default(path: str) -> str:
    """The project's default settings: 160x120 at 24 fps, no frame cap."""
    from preprocessing import video_to_array

    return str(video_to_array(path).shape)


def _decode_capped(path: str) -> str:
    from preprocessing import video_to_array

    return str(video_to_array(path, max_frames=5).shape)


def _decode_small(path: str) -> str:
    from preprocessing import video_to_array

    return str(video_to_array(path, fps=4, size=(32, 24), threads=1).shape)


def _decode_errors():
    from preprocessing import VideoDecodeError

    return (VideoDecodeError,)


@pytest.mark.parametrize("gap_frames", [24 * 3600 * 10, 2**40], ids=["10 hours", "1.5 thousand years"])
def test_timestamp_jump_is_refused_not_a_memory_error(tmp_path, gap_frames):
    """Four frames, the last one hours (or millennia) after the third: the fps rule would repeat the
    third frame until then, 46 GiB at 160x120 for the 1.2 KB file, and `video_to_array` died with
    MemoryError (or filled memory). It must refuse the file with a one-line VideoDecodeError, and
    still give frames when `max_frames` bounds the output."""
    path = write_clip(tmp_path / "jump.mkv", moving_frames(np.random.default_rng(0), 4, 48, 64),
                      codec="ffv1", pix_fmt="yuv420p", pts=[0, 1, 2, gap_frames])
    full, = run_cases([path], _decode_default, allowed=_decode_errors(), timeout=60, memory_limit=MEMORY_LIMIT)
    assert full.status == "error", full
    assert "GiB" in full.detail and "max_frames" in full.detail and "\n" not in full.detail
    capped, = run_cases([path], _decode_capped, allowed=_decode_errors(), timeout=60, memory_limit=MEMORY_LIMIT)
    assert (capped.status, capped.detail) == ("ok", "(5, 120, 160, 3)"), capped


def _saved(pattern: str) -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob(pattern) if p.is_file())


@pytest.mark.skipif(not _saved("decode-*"), reason="no saved decoder inputs")
def test_saved_decoder_inputs():
    paths = _saved("decode-*")
    outcomes = run_cases(paths, _decode_small, allowed=_decode_errors(), timeout=30, memory_limit=MEMORY_LIMIT)
    bad = [(o.path, o.status, o.detail[:300]) for o in outcomes if o.status not in ("ok", "error")]
    assert bad == []


def _read_tfrecord(path: str) -> str:
    from data.yt8m import read_yt8m

    n = 0
    for level in ("video", "frame"):
        try:
            n += sum(1 for _ in read_yt8m(path, level=level))
        except Exception as e:
            from data.tfrecord_io import TFRecordError

            if not isinstance(e, TFRecordError):
                raise
    return f"records={n}"


@pytest.mark.skipif(not _saved("tfrecord-*"), reason="no saved TFRecord inputs")
def test_saved_tfrecord_inputs():
    outcomes = run_cases(_saved("tfrecord-*"), _read_tfrecord, allowed=(), timeout=30, memory_limit=MEMORY_LIMIT)
    bad = [(o.path, o.status, o.detail[:300]) for o in outcomes if o.status != "ok"]
    assert bad == []
