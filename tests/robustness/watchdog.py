"""Run a function on many inputs, each in a worker process with a time limit: a hang or a crash of
the code under test becomes one counted outcome instead of a stuck or dead test run.

    outcomes = run_cases(paths, decode_target, allowed=(VideoDecodeError,), workers=2, timeout=20)

Outcome status, per input:
- "ok":    the target returned (its return value, a short string, is the detail);
- "error": the target raised one of the `allowed` exception types (the declared failure);
- "crash": it raised anything else, or the worker process died (segfault, abort, killed for memory);
- "hang":  it did not finish within `timeout` seconds: the worker is killed and replaced.

Workers are forked on Linux (milliseconds; the parent holds no open decoder), spawned elsewhere. A
worker serves inputs one after another until it crashes or hangs; then a fresh one takes its place.
With `memory_limit`, a worker's address space may grow by that many bytes at most (RLIMIT_AS, Linux):
a runaway allocation becomes a MemoryError ("crash" unless allowed) instead of a machine out of memory.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

STATUSES = ("ok", "error", "crash", "hang")


@dataclass(frozen=True)
class Outcome:
    path: str
    status: str  # one of STATUSES
    detail: str  # the target's return value, the error's message, or what went wrong
    seconds: float  # wall time spent on this input (up to the timeout for a hang)
    error_type: str = ""  # exception class name for "error" / "crash" by exception


def _quiet() -> None:
    """Silence FFmpeg's and OpenCV's own logging in the workers: the outcomes say what happened."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        import av.logging

        av.logging.set_level(None)
    except (ImportError, AttributeError):
        pass


def _limit_memory(extra_bytes: int) -> None:
    """Cap this process's address space at its current size plus `extra_bytes` (Linux only)."""
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _serve(conn: multiprocessing.connection.Connection, target: Callable[[str], str], allowed: tuple,
           memory_limit: int | None) -> None:
    """Worker loop: receive a path, run `target` on it, send back (status, detail, error_type)."""
    _quiet()
    faulthandler.disable()  # a crash is reported by the parent; no stack dump from each worker
    if memory_limit is not None:
        _limit_memory(memory_limit)
    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        if path is None:
            return
        try:
            result = ("ok", str(target(path)), "")
        except allowed as e:
            result = ("error", str(e), type(e).__name__)
        except BaseException as e:  # noqa: BLE001 - anything undeclared is the finding we look for
            result = ("crash", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", type(e).__name__)
        conn.send(result)


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    job: tuple[int, str] | None = None
    started: float = 0.0


def _context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def run_cases(
    paths: Sequence[str | os.PathLike],
    target: Callable[[str], str],
    *,
    allowed: tuple[type[BaseException], ...],
    workers: int = 2,
    timeout: float = 20.0,
    memory_limit: int | None = None,
) -> list[Outcome]:
    """Outcomes in the order of `paths`. `target` must be a module-level function (spawn pickles it);
    `memory_limit`: bytes each worker may add to its address space (None: no cap)."""
    assert workers >= 1 and timeout > 0, "workers >= 1 and timeout > 0"
    ctx = _context()
    todo = deque(enumerate(os.fspath(p) for p in paths))
    outcomes: list[Outcome | None] = [None] * len(todo)
    slots: list[_Slot | None] = [None] * min(workers, max(1, len(todo)))

    def start() -> _Slot:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, target, allowed, memory_limit), daemon=True)
        process.start()
        child.close()
        return _Slot(process, parent)

    def retire(i: int, slot: _Slot) -> None:
        if slot.process.is_alive():
            os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.join(5)
        slot.conn.close()
        slots[i] = None

    try:
        while todo or any(s is not None and s.job is not None for s in slots):
            for i, slot in enumerate(slots):  # hand out work
                if todo and (slot is None or slot.job is None):
                    slot = slots[i] = slot or start()
                    slot.job, slot.started = todo.popleft(), time.monotonic()
                    slot.conn.send(slot.job[1])
            busy = [s for s in slots if s is not None and s.job is not None]
            next_deadline = min(s.started + timeout for s in busy)
            ready = multiprocessing.connection.wait(
                [s.conn for s in busy], timeout=max(0.0, next_deadline - time.monotonic())
            )
            now = time.monotonic()
            for i, slot in enumerate(slots):
                if slot is None or slot.job is None:
                    continue
                index, path = slot.job
                if slot.conn in ready:
                    try:
                        status, detail, error_type = slot.conn.recv()
                    except (EOFError, OSError):  # the worker died mid-job
                        slot.process.join(5)
                        code = slot.process.exitcode
                        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        outcomes[index] = Outcome(path, "crash", f"worker process died ({why})", now - slot.started)
                        retire(i, slot)
                        continue
                    outcomes[index] = Outcome(path, status, detail, now - slot.started, error_type)
                    slot.job = None
                elif now - slot.started >= timeout:
                    outcomes[index] = Outcome(path, "hang", f"no result after {timeout:g} s", now - slot.started)
                    retire(i, slot)
    finally:
        for i, slot in enumerate(slots):
            if slot is None:
                continue
            try:
                slot.conn.send(None)
            except OSError:
                pass
            slot.process.join(2)
            retire(i, slot)
    return [o for o in outcomes if o is not None]
