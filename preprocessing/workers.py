"""Worker processes: how they start (`worker_context`), and that they end when their parent ends.

`concurrent.futures.ProcessPoolExecutor` workers wait on their task queue; when the parent is killed
(`kill -9`, the out-of-memory killer) nothing wakes them, and forked workers even hold the queue's
other end themselves, so they wait forever, each holding a copy of the parent's memory: without the
guard below, `classify` or `preprocess --workers 2` killed with SIGKILL leaves its workers behind
(docs/RELIABILITY.md, "Findings and fixes"; tests/test_interrupt.py checks it). A pool
initializer calling `die_with_parent(parent_pid)` asks Linux to send the worker SIGKILL when its
parent dies (prctl PR_SET_PDEATHSIG); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing
import multiprocessing.context
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_context() -> multiprocessing.context.BaseContext:
    """How decode workers start: fork on Linux, the platform's default elsewhere.

    Fork starts a worker without importing anything, where spawn re-imports numpy and PyAV in each
    one (enough to eat the gain of a second worker on a short run). Forking is safe here: the
    parents hold no open decoder when they fork, and the workers use no torch. An unreachable
    decoder is another matter: a reference cycle (an exception's traceback and the frame that held
    the container) can keep one alive until the garbage collector runs, and if that happens in a
    forked worker, freeing the decoder waits forever on the copy of a lock its threads held in the
    parent. So the parent collects its garbage here, before it forks, and each worker freezes what
    it inherited (`die_with_parent`).
    """
    if sys.platform.startswith("linux"):
        gc.collect()
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a worker: SIGKILL this process when `parent_pid` (its parent) dies. Also
    keeps the garbage collector off the objects the worker inherited (see `worker_context`)."""
    gc.freeze()
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
