"""Forked workers beside an unreachable decoder: freeing it in the worker would wait forever on the
copy of a lock its threads held in the parent (`preprocessing.workers.worker_context`)."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import av
import pytest

from preprocessing.workers import die_with_parent, worker_context

CLIP = Path(__file__).resolve().parent.parent / "data" / "samples" / "nasa_13013.mp4"


def _collect_in_worker(parent_pid: int) -> None:
    die_with_parent(parent_pid)  # first thing in every worker
    gc.collect()  # what any allocation-heavy worker soon does on its own


def _threaded_decoder_in_a_cycle() -> None:
    """A container with FFmpeg's decoder threads running, reachable only from a reference cycle
    (as an exception's traceback keeps the frame that opened it)."""
    container = av.open(str(CLIP))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for _, _frame in zip(range(5), container.decode(stream)):
        pass
    cycle = {"container": container}
    cycle["self"] = cycle


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork on Linux only")
@pytest.mark.parametrize("garbage_made", ["before the context", "after the context"])
def test_a_worker_forked_beside_a_garbage_decoder_ends(garbage_made):
    # without the parent's collection and the worker's gc.freeze(), the worker hangs in
    # avcodec_free_context (pthread_cond_destroy on the copied condition variable)
    gc.disable()
    try:
        if garbage_made == "before the context":
            _threaded_decoder_in_a_cycle()
            ctx = worker_context()
        else:
            ctx = worker_context()
            _threaded_decoder_in_a_cycle()
        worker = ctx.Process(target=_collect_in_worker, args=(os.getpid(),))
        worker.start()
        worker.join(30)
        hung = worker.exitcode is None
        if hung:
            worker.kill()
            worker.join()
    finally:
        gc.enable()
        gc.collect()
    assert not hung, f"the worker hung freeing the parent's decoder (garbage made {garbage_made})"
    assert worker.exitcode == 0
