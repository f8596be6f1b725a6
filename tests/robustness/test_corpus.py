"""The robustness corpus through the decoder and through `classify` (tests/robustness/run.py holds the
checks; `python -m tests.robustness.run` prints the same figures).

- the corpus: >= 200 inputs, seeded and deterministic;
- the watchdog itself counts hangs and crashes (so a quiet run means something);
- `video_to_array` on every input: frames or VideoDecodeError, one line, within 20 s, no crash;
- `classify` (the real CLI, a subprocess) on the corpus folder: exit 3, one row per input, the
  decoder's verdict for each, no traceback, no stray files;
- regressions: a named pipe is refused at once by the decoder and by classify's input discovery.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from .corpus import Case, build_corpus, remove_corpus
from .run import (
    OUTPUT_FILES,
    TIMELINE_FILES,
    check_classify,
    check_decode,
    classify_corpus,
    decode_corpus,
    figures,
    make_checkpoint,
    snapshot,
)
from .shards import build_shards, check_classify_shards, check_shards, make_feature_checkpoint, read_target
from .watchdog import run_cases

TIMEOUT = 20.0  # seconds per input before it counts as a hang (decoding one takes < 1 s here)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("robustness") / "corpus"
    cases = build_corpus(folder, seed=0)
    yield folder, cases
    remove_corpus(folder)


@pytest.fixture(scope="module")
def decoded(corpus):
    folder, cases = corpus
    before = snapshot(folder)
    t0 = time.perf_counter()
    outcomes = decode_corpus(cases, workers=2, timeout=TIMEOUT)
    return outcomes, before, snapshot(folder), time.perf_counter() - t0


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK) and p.stat().st_mode & 0o400
    }


def test_corpus_is_large_seeded_and_deterministic(corpus, tmp_path):
    folder, cases = corpus
    assert len(cases) >= 200
    kinds = {c.group for c in cases}
    assert {"truncated", "header flips", "payload flips", "swapped extension", "special", "synthetic"} <= kinds
    again = build_corpus(tmp_path / "again", seed=0, big=False)
    other = build_corpus(tmp_path / "other", seed=1, big=False)
    try:
        first, second = _digests(folder), _digests(tmp_path / "again")
        assert second and all(first[name] == digest for name, digest in second.items())
        assert {c.name for c in again} == {c.name for c in cases} - {"synth_4k.mp4"}
        assert _digests(tmp_path / "other") != second  # the seed matters
        assert len(other) >= 200
    finally:
        remove_corpus(tmp_path / "again")
        remove_corpus(tmp_path / "other")


# --- the watchdog catches what it is there to catch ---------------------------------------------------


def _behave(path: str) -> str:
    """A target that misbehaves on request: the path names the behaviour."""
    name = Path(path).name
    if name == "hang":
        time.sleep(60)
    if name == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "undeclared":
        raise KeyError("not a declared error")
    if name == "declared":
        raise LookupError("a declared error")
    return "fine"


def test_watchdog_counts_hangs_crashes_and_errors():
    names = ["fine", "hang", "segfault", "undeclared", "declared", "fine"]
    t0 = time.monotonic()
    outcomes = run_cases(names, _behave, allowed=(LookupError,), workers=2, timeout=2.0)
    assert time.monotonic() - t0 < 30, "the hang must be cut off at the timeout"
    status = {(n, o.status, o.error_type) for n, o in zip(names, outcomes)}
    assert ("fine", "ok", "") in status
    assert ("hang", "hang", "") in status
    assert ("segfault", "crash", "") in status
    assert ("declared", "error", "LookupError") in status
    assert ("undeclared", "error", "KeyError") in status  # a subclass of an allowed type is allowed
    assert [o.path for o in outcomes] == names
    strict = run_cases(["undeclared"], _behave, allowed=(ValueError,), workers=1, timeout=5.0)
    assert strict[0].status == "crash" and "KeyError" in strict[0].detail


# --- the corpus through the decoder and through classify ----------------------------------------------


def test_decoder_returns_frames_or_a_one_line_error_for_every_input(corpus, decoded):
    folder, cases = corpus
    outcomes, before, after, seconds = decoded
    problems = check_decode(cases, outcomes)
    partial = len(set(after) - set(before)) + sum(after[k] != before[k] for k in before if k in after)
    fig = figures(cases, outcomes, partial_files=partial, seconds=seconds, problems=problems)
    print("\n".join(fig.lines()))  # shown with -s; docs/RELIABILITY.md quotes `python -m tests.robustness.run`
    assert fig.status["crash"] == 0 and fig.status["hang"] == 0, problems
    assert partial == 0, "the decoder wrote or changed files in the corpus folder"
    assert fig.good_decoded == fig.good > 15, problems
    assert problems == []
    assert fig.status["ok"] > 50 and fig.status["error"] > 50  # the corpus exercises both paths


def test_classify_cli_gives_one_row_per_input_and_no_traceback(corpus, decoded, tmp_path):
    folder, cases = corpus
    outcomes = decoded[0]
    ckpt = make_checkpoint(tmp_path / "ckpt" / "tiny_tt_gru")
    out_dir = tmp_path / "out"
    run = classify_corpus(folder, out_dir, ckpt, workers=2, timeout=240)
    assert run.returncode == 3, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert check_classify(cases, outcomes, run, out_dir) == []
    assert {p.name for p in out_dir.iterdir()} - TIMELINE_FILES == OUTPUT_FILES  # no temporary files left behind


# --- damaged TFRecord shards through the reader and through classify ------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from data.tfrecord_io import TFRecordError

    folder = tmp_path_factory.mktemp("shards")
    cases = build_shards(folder, seed=0)
    outcomes = run_cases([c.path for c in cases], read_target, allowed=(TFRecordError,), workers=2, timeout=TIMEOUT)
    return folder, cases, outcomes


def test_reader_gives_records_or_a_one_line_error_for_every_shard(shards):
    folder, cases, outcomes = shards
    assert len(cases) >= 60
    assert check_shards(cases, outcomes) == []
    status = Counter(o.status for o in outcomes)
    assert status["crash"] == status["hang"] == 0 and status["ok"] >= 10 and status["error"] >= 30, status


def test_classify_cli_on_damaged_shards(shards, tmp_path):
    folder, cases, outcomes = shards
    ckpt = make_feature_checkpoint(tmp_path / "ckpt" / "logistic")
    run = classify_corpus(folder, tmp_path / "out", ckpt, workers=0, timeout=240)
    assert check_classify_shards(cases, outcomes, run, tmp_path / "out") == []


# --- regressions found by the corpus --------------------------------------------------------------


def _discover(path: str) -> str:
    from app.inference import discover_inputs

    items = discover_inputs([path])
    return ";".join(f"{it.kind}:{it.error}" for it in items)


def _decode(path: str) -> str:
    from preprocessing import video_to_array

    return str(video_to_array(path, fps=4, size=(32, 24)).shape)


def test_named_pipe_is_refused_at_once(tmp_path):
    """Opening a FIFO for reading waits for a writer forever: decoding and classify's input discovery
    used to hang on one. Both must refuse it as "not a regular file" instead."""
    from preprocessing import VideoDecodeError

    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "folder" / "pipe.avi")
    decode, = run_cases([tmp_path / "pipe.mp4"], _decode, allowed=(VideoDecodeError,), timeout=10)
    assert decode.status == "error" and "not a regular file" in decode.detail, decode
    for target in (tmp_path / "pipe.mp4", tmp_path / "folder"):
        found, = run_cases([target], _discover, allowed=(), timeout=10)
        assert found.status == "ok", found
        assert found.detail.startswith("invalid:") and "not a regular file" in found.detail, found.detail
